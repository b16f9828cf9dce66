"""The hub's loopback API over real sockets with the committed student model (student,espeak)."""

from __future__ import annotations

import http.client
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.engines import load_engine
from edge_agent.engines.base import Engine, SynthesisRequest
from edge_agent.local_api import LocalApi, LocalApiError
from edge_agent.local_http import UnixHTTPConnection
from edge_agent.local_or_cloud import decide, local_fallback
from edge_agent.phrase_cache import PhraseCache, cache_key
from edge_agent.reminders import ReminderStore
from voicefleet.audio import STREAMING_SIZE, wav_header
from voicefleet.protocol import Capabilities

PHRASE = "今天下午三点提醒我开会，请记得带上笔记本"  # 20 characters
TOKEN = "local-api-test-token"  # what VOICEFLEET_LOCAL_API_TOKEN holds on a hub


class TokenConnection(http.client.HTTPConnection):
    """A loopback client that sends the hub's token with every request, as a local daemon would."""

    def request(self, method, url, body=None, headers=None, **kw):
        super().request(method, url, body, {**(headers or {}), "Authorization": f"Bearer {TOKEN}"}, **kw)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_engine("student,espeak")


@pytest.fixture
def api(engine: Engine, tmp_path: Path) -> Iterator[LocalApi]:
    a = LocalApi(engine, PhraseCache(tmp_path / "cache", 50_000_000), ReminderStore(tmp_path / "rem.json"),
                 unix_socket=str(tmp_path / "api.sock"), port=0, token=TOKEN)
    a.start()
    yield a
    a.stop()


def connect(api: LocalApi) -> http.client.HTTPConnection:
    return TokenConnection("127.0.0.1", api.port, timeout=30)


def speak(conn: http.client.HTTPConnection, **body) -> tuple[http.client.HTTPResponse, bytes, float, float]:
    """(response, body, seconds to the first body bytes, seconds to the end)."""
    t0 = time.perf_counter()
    conn.request("POST", "/v1/speak", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    first = resp.read1(65536) if resp.status == 200 else b""
    t_first = time.perf_counter() - t0
    data = first + resp.read()
    return resp, data, t_first, time.perf_counter() - t0


def check_wav(data: bytes, rate: int = 24000) -> None:
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack_from("<I", data, 24)[0] == rate
    assert len(data) > 44 + rate  # more than half a second of 16-bit audio


def test_speak_streams_a_wav_then_serves_it_from_cache(api: LocalApi) -> None:
    conn = connect(api)
    resp, data, _, _ = speak(conn, text=PHRASE)
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("X-Voicefleet-Source") == "local" and resp.getheader("X-Voicefleet-Fallback") is None
    assert struct.unpack_from("<I", data, 40)[0] == STREAMING_SIZE  # length unknown while it streams
    check_wav(data)

    resp2, data2, _, _ = speak(conn, text=PHRASE)  # same keep-alive connection
    assert resp2.status == 200 and resp2.getheader("X-Voicefleet-Source") == "cache"
    assert data2[44:] == data[44:] and struct.unpack_from("<I", data2, 40)[0] == len(data2) - 44
    assert api.cache.stats()["hits"] == 1


def test_speak_over_unix_socket(api: LocalApi) -> None:
    conn = UnixHTTPConnection(api.unix_socket)
    conn.request("POST", "/v1/speak", json.dumps({"text": "客厅的灯已经关了"}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("X-Voicefleet-Source") == "local"
    check_wav(resp.read())
    conn.request("GET", "/healthz")
    health = json.loads(conn.getresponse().read())
    assert health["status"] == "ok" and health["link_up"] is False and health["cache"]["entries"] == 1


def test_errors_are_json_with_a_code_and_text(api: LocalApi) -> None:
    conn = connect(api)
    cases = [({"text": ""}, 422, "invalid_text"), ({"text": "hi", "speed": 2}, 400, "invalid_request"),
             ({"text": "こんにちは", "lang": "ja"}, 422, "unsupported")]
    for body, status, code in cases:
        resp, data, _, _ = speak(conn, **body)
        assert resp.status == status and json.loads(data)["error"]["code"] == code, data
    conn.request("POST", "/v1/speak", b"x" * 100_000, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 413 and "at most" in json.loads(resp.read())["error"]["text"]
    conn = connect(api)
    conn.request("GET", "/v1/nope")
    assert conn.getresponse().status == 404


def test_fallback_header_when_the_cloud_raises(engine: Engine, tmp_path: Path) -> None:
    def broken_cloud(request: SynthesisRequest):
        raise ConnectionError("broker unreachable")

    api = LocalApi(engine, PhraseCache(tmp_path, 10_000_000), None, cloud=broken_cloud, port=0, token=TOKEN)
    api.start()
    try:
        # Cantonese is local (eSpeak); a cloned voice is not, so the cloud is tried, fails, local speaks.
        resp, data, _, _ = speak(connect(api), text="今天天气很好", voice="my-cloned-voice")
        assert resp.status == 200 and resp.getheader("X-Voicefleet-Source") == "local"
        reason = resp.getheader("X-Voicefleet-Fallback")
        assert "cloud failed" in reason and "broker unreachable" in reason and "my-cloned-voice" in reason
        check_wav(data)
    finally:
        api.stop()


def test_cloud_that_misses_the_first_chunk_budget_falls_back(engine: Engine, tmp_path: Path) -> None:
    def slow_cloud(request: SynthesisRequest):
        time.sleep(2)
        return 24000, iter([b"\0\0" * 100])

    api = LocalApi(engine, None, None, cloud=slow_cloud, first_chunk_budget_s=0.2, port=0, token=TOKEN)
    api.start()
    try:
        resp, data, _, total = speak(connect(api), text="早上好", instruction="用开心的语气")
        assert "no audio within 0.2 s" in resp.getheader("X-Voicefleet-Fallback") and total < 1.5
        check_wav(data)
    finally:
        api.stop()


def test_cloud_serves_what_the_local_model_lacks(engine: Engine, tmp_path: Path) -> None:
    pcm = b"\1\0" * 24000

    def cloud(request: SynthesisRequest):
        return 24000, iter([pcm[:100], pcm[100:]])

    api = LocalApi(engine, None, None, cloud=cloud, port=0, token=TOKEN)
    api.start()
    try:
        resp, data, _, _ = speak(connect(api), text="早上好", dialect="wuu")
        assert resp.getheader("X-Voicefleet-Source") == "cloud" and data[44:] == pcm
        resp, _, _, _ = speak(connect(api), text="早上好")  # local covers it: no cloud round trip
        assert resp.getheader("X-Voicefleet-Source") == "local"
    finally:
        api.stop()


CAPS = Capabilities(languages=["zh", "en"], dialects=["yue"], voices=["default"])


@pytest.mark.parametrize("request_, link_up, target, says", [
    (SynthesisRequest("你好"), True, "local", "covers"),
    (SynthesisRequest("你好"), False, "local", "covers"),
    (SynthesisRequest("你好", dialect="yue"), True, "local", "covers"),
    (SynthesisRequest("你好", dialect="wuu"), True, "cloud", "dialect 'wuu'"),
    (SynthesisRequest("你好", dialect="wuu"), False, "local", "link down"),
    (SynthesisRequest("你好", voice="grandma-clone"), True, "cloud", "voice 'grandma-clone'"),
    (SynthesisRequest("你好", instruction="whisper"), True, "cloud", "style instructions"),
    (SynthesisRequest("你好", instruction="whisper"), False, "local", "style instructions"),
    (SynthesisRequest("hallo", lang="de"), True, "cloud", "language 'de'"),
])
def test_decide(request_: SynthesisRequest, link_up: bool, target: str, says: str) -> None:
    got, reason = decide(request_, CAPS, link_up)
    assert got == target and says in reason


def test_local_fallback_drops_what_the_local_model_lacks() -> None:
    got = local_fallback(SynthesisRequest("你好", dialect="wuu", voice="clone", instruction="sing"), CAPS)
    assert (got.dialect, got.voice, got.instruction) == (None, None, None)
    assert local_fallback(SynthesisRequest("你好", dialect="yue", voice="default"), CAPS).dialect == "yue"


def test_cache_survives_restart_and_evicts_least_recently_used(tmp_path: Path) -> None:
    keys = [cache_key("student-onnx", "1", "zh", None, None, f"phrase {i}") for i in range(4)]
    pcm = b"\1\0" * 1000  # 2000 bytes
    cache = PhraseCache(tmp_path, 10_000)
    for k in keys[:3]:
        assert cache.put(k, 24000, pcm)
    reopened = PhraseCache(tmp_path, 10_000)
    assert reopened.get(keys[0]) == (24000, pcm) and reopened.stats()["entries"] == 3
    time.sleep(0.01)
    small = PhraseCache(tmp_path, 5_500)  # room for two: the least recently used (keys[1]) goes
    assert small.stats()["entries"] == 2 and small.get(keys[1]) is None and small.get(keys[0]) is not None
    small.put(keys[3], 24000, pcm)  # over again: keys[2] is now the oldest
    assert keys[2] not in small and keys[0] in small and keys[3] in small
    assert small.stats()["evictions"] == 2 and small.stats()["bytes"] <= 5_500
    assert not small.put(keys[1], 24000, b"\0" * 6000)  # larger than the whole cache
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json", ".wav", ".wav"]


def test_cache_drops_torn_writes_on_start(tmp_path: Path) -> None:
    (tmp_path / "deadbeef.wav").write_bytes(wav_header(24000, 2) + b"\0\0")  # its meta never landed
    (tmp_path / "x.wav.1.2.tmp").write_bytes(b"partial")
    assert PhraseCache(tmp_path, 10_000).stats()["entries"] == 0
    assert list(tmp_path.iterdir()) == []


def test_reminders_crud_over_http(api: LocalApi) -> None:
    conn = connect(api)
    conn.request("POST", "/v1/reminders", json.dumps({"text": "吃药", "time": "08:00"}))
    resp = conn.getresponse()
    created = json.loads(resp.read())
    assert resp.status == 201 and created["next_due"] > time.time()
    conn.request("POST", "/v1/reminders", json.dumps({"text": "吃药", "time": "25:00"}))
    resp = conn.getresponse()
    assert resp.status == 422 and "HH:MM" in json.loads(resp.read())["error"]["text"]
    conn.request("GET", "/v1/reminders")
    assert [r["id"] for r in json.loads(conn.getresponse().read())["reminders"]] == [created["id"]]
    conn.request("DELETE", f"/v1/reminders/{created['id']}")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 204
    conn.request("DELETE", f"/v1/reminders/{created['id']}")
    resp = conn.getresponse()
    assert resp.status == 404 and json.loads(resp.read())["error"]["code"] == "not_found"


def test_say_goes_through_the_cache(api: LocalApi) -> None:
    rate, pcm = api.say("该吃药了")
    assert rate == 24000 and pcm
    assert api.say("该吃药了") == (rate, pcm) and api.cache.stats()["hits"] == 1


# ------------------------------------------------------------------- who may reach it, how much


def _listening_tcp_ports() -> set[int]:
    import psutil

    return {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def test_a_hub_with_only_a_socket_opens_no_tcp_port(engine: Engine, tmp_path: Path) -> None:
    """The socket's 0660 mode is the API's guard: a loopback port beside it would let any local
    user speak, edit reminders and send cloud jobs under the hub's token."""
    from edge_agent.config import AgentSettings
    from edge_agent.hub import Hub
    from edge_agent.journal import Journal

    before = _listening_tcp_ports()
    settings = AgentSettings(home=tmp_path, device_id="hub-socket-only", local_api_socket=str(tmp_path / "api.sock"))
    hub = Hub(settings, engine, Journal(tmp_path / "journal.db"))
    hub.start()
    try:
        assert _listening_tcp_ports() - before == set() and hub.local_api.url == ""
        conn = UnixHTTPConnection(str(tmp_path / "api.sock"))
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200  # the socket needs no token
    finally:
        hub.stop()


def test_tcp_needs_a_token_and_will_not_start_without_one(api: LocalApi, engine: Engine) -> None:
    with pytest.raises(LocalApiError) as refused:
        LocalApi(engine, None, None, port=0)
    assert refused.value.code == "local_api_token_missing" and "VOICEFLEET_LOCAL_API_TOKEN" in refused.value.text
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path, body in (("GET", "/healthz", None), ("POST", "/v1/speak", json.dumps({"text": "你好"})),
                                   ("POST", "/v1/reminders", json.dumps({"text": "吃药", "time": "08:00"}))):
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            error = json.loads(resp.read())["error"]
            assert (resp.status, error["code"]) == (401, "unauthorized"), (headers, path)
            assert "VOICEFLEET_LOCAL_API_TOKEN" in error["text"]
    assert api.reminders.list() == []
    conn = connect(api)  # with the token
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_a_text_the_control_plane_takes_fits_the_body_and_is_spoken(api: LocalApi) -> None:
    """The control plane takes texts under 5,000 characters: so does the hub, whatever JSON escaping
    the client uses, and one more character gets the control plane's own words."""
    from pydantic import ValidationError

    from control_plane.models import JobCreate

    longest = ("今天天气很好。" * 800)[:4999]
    for ensure_ascii in (True, False):  # \uXXXX escapes: 6 bytes a character, 30 KB
        conn = connect(api)
        conn.request("POST", "/v1/speak", json.dumps({"text": longest}, ensure_ascii=ensure_ascii).encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()[:300]
        assert resp.read1(65536)[:4] == b"RIFF"
        conn.close()  # the rest need not be spoken: the engine stops at its next chunk
    resp, data, _, _ = speak(connect(api), text=longest + "好")
    error = json.loads(data)["error"]
    assert (resp.status, error["code"]) == (422, "text_too_long")
    assert error["text"] == "text has 5000 characters; split it into jobs under 5000"
    with pytest.raises(ValidationError) as control_plane:
        JobCreate(text=longest + "好")
    assert error["text"] in str(control_plane.value)
