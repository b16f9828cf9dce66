"""The voice library over HTTP (the real app on Mosquitto and SQLite, in-process), with real clips
made here (numpy -> soundfile), and the speaker-embedding cache on real Redis and in process."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from services import ADMIN_TOKEN

from benchmarks.frontend import measure_embedding
from benchmarks.signals import speechlike
from control_plane import voices
from control_plane.app import create_app
from control_plane.core.config import Settings
from control_plane.voices import EMBED_DIM, EmbeddingCache, embed
from voicefleet.audio_checks import check_prompt
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers
from voicefleet.protocol import Capabilities, DeviceState, EngineDescriptor, device_topic, encode

CONSENT = "Recorded by the test suite; synthetic speech, no person's voice"
TRANSCRIPT = "今天下午三点提醒我开会"
RNG = np.random.default_rng(99)


def wav(x: np.ndarray, sr: int = 24_000, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def clip(seed: int, **kw) -> bytes:
    return wav(speechlike(5.0, seed=seed, **kw))


@pytest.fixture
def app(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/vf.db", mqtt_url=mqtt_broker.url,
                        control_id=f"cp-{uuid.uuid4().hex[:8]}", redis_url=None)
    with TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN)) as client:
        yield client


def upload(client: TestClient, data: bytes, filename: str = "prompt.wav", **fields: str | None):
    form = {"transcript": TRANSCRIPT, "consent": CONSENT} | fields
    return client.post("/v1/voices", files={"file": (filename, data, "application/octet-stream")},
                       data={k: v for k, v in form.items() if v is not None})


def error(resp) -> dict:
    body = resp.json()
    assert set(body["error"]) >= {"code", "text"} and body["error"]["text"], body
    return body["error"]


# ------------------------------------------------------------------------------ uploading


def test_a_valid_clip_becomes_a_voice_with_its_measurements_and_normalised_audio(app: TestClient):
    resp = upload(app, clip(1), name="Ana")
    assert resp.status_code == 201, resp.text
    voice = resp.json()
    assert voice["kind"] == "prompt" and voice["name"] == "Ana" and voice["transcript"] == TRANSCRIPT
    assert voice["consent"] == CONSENT and voice["sample_rate"] == 24_000
    assert voice["duration_s"] == pytest.approx(5.0) and voice["snr_db"] > 40 and "embedding" not in voice
    assert app.get(f"/v1/voices/{voice['id']}").json()["content_sha256"] == voice["content_sha256"]
    audio = app.get(voice["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    pcm, sr = sf.read(io.BytesIO(audio.content), dtype="int16")
    assert sr == 24_000 and pcm.ndim == 1 and 20 * np.log10(np.abs(pcm).max() / 32767) == pytest.approx(-1, abs=0.01)


@pytest.mark.parametrize(("case", "make", "filename", "code"), [
    ("silence", lambda: wav(np.zeros(5 * 24_000)), "silence.wav", "mostly_silent"),
    ("heavy clipping", lambda: wav(np.clip(speechlike(5.0, seed=2) * 8, -1, 1)), "loud.wav", "clipped"),
    ("1 s", lambda: wav(speechlike(1.0, seed=3)), "short.wav", "too_short"),
    ("40 s", lambda: wav(speechlike(40.0, seed=4)), "long.wav", "too_long"),
    ("8 kHz", lambda: wav(speechlike(5.0, 8000, seed=5), 8000), "phone.wav", "low_sample_rate"),
    ("corrupt bytes", lambda: RNG.bytes(30_000), "corrupt.flac", "undecodable"),
    ("a text file renamed .wav", lambda: ("你好, this is a text file\n" * 200).encode(), "notes.wav", "undecodable"),
    ("white noise at 0 dB SNR", lambda: wav(_noisy(speechlike(5.0, seed=6))), "street.wav", "noisy"),
    ("three channels", lambda: wav(np.stack([speechlike(5.0, seed=7)] * 3, axis=1)), "multi.wav", "bad_channels"),
])
def test_each_bad_clip_is_refused_with_its_own_code(app: TestClient, case: str, make, filename: str, code: str):
    resp = upload(app, make(), filename)
    assert resp.status_code == 422, (case, resp.text)
    err = error(resp)
    assert err["code"] == code, (case, err)
    assert filename in err["text"]
    assert app.get("/v1/voices", params={"kind": "prompt"}).json() == []


def _noisy(x: np.ndarray) -> np.ndarray:
    y = x + RNG.standard_normal(len(x)) * np.sqrt(np.mean(x**2))  # noise power = speech power: 0 dB
    return 0.5 * y / np.abs(y).max()


def test_stereo_is_mixed_down_and_accepted(app: TestClient):
    x = speechlike(6.0, 48_000, seed=8)
    resp = upload(app, wav(np.stack([x, 0.5 * x], axis=1), 48_000, fmt="FLAC"), "stereo.flac")
    assert resp.status_code == 201, resp.text
    assert resp.json()["sample_rate"] == 48_000
    pcm, sr = sf.read(io.BytesIO(app.get(resp.json()["audio_url"]).content))
    assert sr == 24_000 and pcm.ndim == 1


def test_missing_fields_say_what_to_give(app: TestClient):
    assert error(upload(app, clip(9), transcript=None))["code"] == "missing_transcript"
    assert error(upload(app, clip(9), transcript="   "))["code"] == "missing_transcript"
    assert error(upload(app, clip(9), consent=None))["code"] == "missing_consent"
    assert error(upload(app, clip(9), consent="ok"))["code"] == "missing_consent"
    resp = app.post("/v1/voices", data={"transcript": TRANSCRIPT, "consent": CONSENT})
    assert resp.status_code == 422 and error(resp)["code"] == "missing_file"


@pytest.mark.parametrize("given, transcript, stored", [
    ("EN", "See you at three, in the garden.", "en"),  # the uploader's word, any case
    (None, TRANSCRIPT, "zh"),  # Han names one of our languages
    (None, "See you at three, in the garden.", None),  # Latin is five of them: unknown, not guessed
    ("  ", "안녕하세요, 만나서 반갑습니다.", "ko"),
])
def test_a_voice_records_the_language_its_clip_speaks(app: TestClient, given, transcript, stored):
    resp = upload(app, clip(21), transcript=transcript, language=given)
    assert resp.status_code == 201, resp.text
    voice = resp.json()
    assert voice["language"] == stored
    assert app.get(f"/v1/voices/{voice['id']}").json()["language"] == stored


def test_an_unknown_language_is_refused_naming_the_choices(app: TestClient):
    resp = upload(app, clip(22), language="klingon")
    err = error(resp)
    assert resp.status_code == 422 and err["code"] == "invalid_language"
    assert "'klingon'" in err["text"] and "zh, en, ja" in err["text"]
    assert app.get("/v1/voices?kind=prompt").json() == [], "nothing stored"


def test_the_same_clip_again_returns_the_existing_voice(app: TestClient):
    first = upload(app, clip(10), name="first")
    again = upload(app, clip(10), "again.wav", name="second", transcript="other words")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"] and again.json()["name"] == "first"
    # The same samples in another lossless container are the same clip.
    pcm = (speechlike(5.0, seed=11) * 32767).astype(np.int16)
    a, b = upload(app, wav(pcm)), upload(app, wav(pcm, fmt="FLAC"), "same.flac")
    assert (a.status_code, b.status_code) == (201, 200) and a.json()["id"] == b.json()["id"]


def test_two_clips_with_the_same_transcript_are_two_voices(app: TestClient):
    a = upload(app, clip(12))
    b = upload(app, clip(13, f0=180.0, formant_scale=1.1))
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"] and a.json()["content_sha256"] != b.json()["content_sha256"]
    cache = app.app.state.voices.cache
    assert (cache.misses, cache.hits) == (2, 0)  # keyed by content, never by transcript


def test_uploads_over_1_mib_are_allowed_here_and_over_10_mb_refused(app: TestClient):
    x = speechlike(29.0, 48_000, seed=14)
    big = wav(np.stack([x, x], axis=1), 48_000, subtype="PCM_24")  # about 8.4 MB
    assert 1 << 20 < len(big) < 10_000_000
    assert upload(app, big, "long.wav").status_code == 201
    huge = upload(app, b"\0" * 11_000_000, "huge.wav")
    assert huge.status_code == 413 and error(huge)["code"] == "too_large" and "10 MB" in error(huge)["text"]
    elsewhere = app.post("/v1/jobs", content=b"{}" + b" " * (2 << 20), headers={"content-type": "application/json"})
    assert elsewhere.status_code == 413  # every other route keeps the 1 MiB limit


# ----------------------------------------------------------------------- finding voices


def test_similar_ranks_a_pitch_shifted_copy_above_an_unrelated_voice(app: TestClient):
    base = upload(app, clip(20, f0=120.0)).json()
    # The same utterance and vocal tract three semitones up (source-filter pitch shift).
    shifted = upload(app, clip(20, f0=120.0 * 2 ** (3 / 12)), "shifted.wav").json()
    unrelated = upload(app, clip(21, f0=220.0, formant_scale=1.2), "other.wav").json()
    ranked = app.get(f"/v1/voices/{base['id']}/similar", params={"limit": 5}).json()
    assert [r["voice"]["id"] for r in ranked] == [shifted["id"], unrelated["id"]]
    assert ranked[0]["similarity"] > ranked[1]["similarity"] + 0.05
    assert len(app.get(f"/v1/voices/{base['id']}/similar", params={"limit": 1}).json()) == 1
    assert error(app.get(f"/v1/voices/{base['id']}/similar", params={"limit": 0}))["code"] == "invalid_request"


def test_unknown_voices_and_path_tricks_are_404(app: TestClient):
    for path in ("/v1/voices/nope", "/v1/voices/nope/audio", "/v1/voices/nope/similar",
                 "/v1/voices/..%2F..%2Fvf.db/audio", "/v1/voices/%2E%2E/audio"):
        resp = app.get(path)
        assert resp.status_code == 404, path
        assert error(resp)["text"]


def _announce_a_standin_agent(broker: MosquittoBroker, device_id: str, *, cloning: bool, voices: list[str]) -> None:
    """The state message an agent sends, published by the test: it stands in for a CosyVoice3 GPU worker
    (preset voices, cloning), which needs a GPU and weights this machine lacks, and for a plain agent
    beside it. The voice routes read only the fleet snapshot that such messages build; the benchmark-
    only timed engine could advertise cloning but no preset voices, and jobs are not run here (real
    agents serve cloned voices in test_voice_routing.py). Not retained: the broker is shared."""
    host, port = broker.url.removeprefix("mqtt://").split(":")
    state = DeviceState(device_id=device_id, status="online", role="cloud", max_concurrency=2,
                        engine=EngineDescriptor(name="cosyvoice3-standin", version="1", model="none",
                                                sample_rate=24_000),
                        capabilities=Capabilities(languages=["zh"], voices=voices, cloning=cloning))
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.publish(device_topic(device_id, "state"), encode(state), qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def _wait_eligible(app: TestClient, device_id: str) -> None:
    deadline = time.monotonic() + 10
    while not (app.get(f"/v1/devices/{device_id}").json().get("eligible")):
        assert time.monotonic() < deadline, f"{device_id} never became eligible"
        time.sleep(0.05)


def test_presets_come_from_the_fleet_and_prompt_voices_are_served_by_cloning_devices(
        app: TestClient, mqtt_broker: MosquittoBroker):
    tag = uuid.uuid4().hex[:6]
    cloner, plain = f"cosy-{tag}", f"edge-{tag}"
    _announce_a_standin_agent(mqtt_broker, cloner, cloning=True, voices=["default", "zh-female-1"])
    _announce_a_standin_agent(mqtt_broker, plain, cloning=False, voices=["default"])
    for dev in (cloner, plain):
        _wait_eligible(app, dev)
    prompt = upload(app, clip(30)).json()
    assert prompt["servable_by"] == [cloner]
    listed = {v["id"]: v for v in app.get("/v1/voices").json()}
    assert listed[prompt["id"]]["servable_by"] == [cloner]
    assert listed["default"]["kind"] == "preset" and listed["default"]["servable_by"] == sorted([cloner, plain])
    assert listed["zh-female-1"]["advertised_by"] == [cloner]
    assert [v["kind"] for v in app.get("/v1/voices", params={"kind": "preset"}).json()] == ["preset", "preset"]
    assert app.get("/v1/voices/zh-female-1").json()["servable_by"] == [cloner]
    assert error(app.get("/v1/voices/default/audio"))["code"] == "no_audio"
    assert error(app.get("/v1/voices/default/similar"))["code"] == "no_embedding"
    app.post(f"/v1/devices/{cloner}/cordon")  # cordoned: not servable now, still advertised
    assert app.get(f"/v1/voices/{prompt['id']}").json()["servable_by"] == []
    assert app.get("/v1/voices/zh-female-1").json() | {"servable_by": []} == listed["zh-female-1"] | {"servable_by": []}


# ------------------------------------------------------------------------- embedding cache


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, wav16k: np.ndarray) -> np.ndarray:
        self.calls += 1
        return embed(wav16k)


def test_embedding_cache_in_process_counts_hits_and_misses():
    prompt = check_prompt(clip(40))
    counting = Counting()
    cache = EmbeddingCache(embedder=counting)
    first = cache.get(prompt.sha256, prompt.samples_16k)
    second = cache.get(prompt.sha256, prompt.samples_16k)
    assert cache.backend == "memory" and (cache.misses, cache.hits, counting.calls) == (1, 1, 1)
    assert first.shape == (EMBED_DIM,) and np.linalg.norm(first) == pytest.approx(1, abs=1e-3)
    assert np.array_equal(first, second)


def test_embedding_cache_on_redis_is_shared_between_processes(redis_url: tuple[str, str]):
    url, prefix = redis_url
    prompt = check_prompt(clip(41))
    one, two = Counting(), Counting()
    replica_a = EmbeddingCache(url, prefix=prefix, embedder=one)
    replica_b = EmbeddingCache(url, prefix=prefix, embedder=two)  # another control plane, same Redis
    computed = replica_a.get(prompt.sha256, prompt.samples_16k)
    cached = replica_b.get(prompt.sha256, prompt.samples_16k)
    assert replica_a.backend == "redis" and (replica_a.misses, replica_a.hits) == (1, 0)
    assert (replica_b.misses, replica_b.hits, two.calls) == (0, 1, 0)
    assert np.array_equal(computed, cached)
    other = check_prompt(clip(42))  # the same transcript would change nothing: the key is the content
    replica_b.get(other.sha256, other.samples_16k)
    assert (replica_b.misses, two.calls) == (1, 1)


def test_two_control_planes_sharing_redis_embed_a_clip_once(redis_url: tuple[str, str], mqtt_broker: MosquittoBroker,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url, prefix = redis_url
    monkeypatch.setattr(voices, "REDIS_PREFIX", prefix)
    counts = []
    for name in ("a", "b"):
        home = tmp_path / name
        settings = Settings(home=home, database_url=f"sqlite:///{home}.db", mqtt_url=mqtt_broker.url,
                            control_id=f"cp-{uuid.uuid4().hex[:8]}", redis_url=url)
        with TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN)) as client:
            assert upload(client, clip(43)).status_code == 201
            cache = client.app.state.voices.cache
            counts.append((cache.backend, cache.misses, cache.hits))
    assert counts == [("redis", 1, 0), ("redis", 0, 1)]


def test_an_unreachable_redis_degrades_to_computing():
    prompt = check_prompt(clip(44))
    cache = EmbeddingCache("redis://127.0.0.1:1/0")
    assert cache.get(prompt.sha256, prompt.samples_16k).shape == (EMBED_DIM,)
    assert (cache.misses, cache.hits) == (1, 0)


def test_measure_embedding_reports_ms_per_clip():
    figures = measure_embedding(n=2)
    assert figures["clips"] == 2 and figures["threads"] == 1 and 0 < figures["ms_per_clip_mean"] < 5000



# ------------------------------------------------------------------------------ deleting


def test_delete_a_voice_by_an_operator_or_its_owner_but_not_while_a_job_speaks_with_it(
        app: TestClient, mqtt_broker: MosquittoBroker):
    def token(role: str) -> dict[str, str]:
        made = app.post("/v1/tokens", json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role})
        return auth_headers(made.json()["token"])

    owner, other, viewer = token("client"), token("client"), token("viewer")
    own = app.post("/v1/voices", files={"file": ("own.wav", clip(50), "audio/wav")},
                   data={"transcript": TRANSCRIPT, "consent": CONSENT}, headers=owner).json()
    same = upload(app, clip(50)).json()  # the admin's voice of the same clip: one stored file
    sha = own["content_sha256"]
    stored = app.app.state.voices.root / "voices" / sha[:2] / f"{sha}.wav"
    assert same["id"] != own["id"] and stored.exists()
    assert app.delete(f"/v1/voices/{own['id']}", headers=viewer).status_code == 403
    assert error(app.delete(f"/v1/voices/{own['id']}", headers=other))["code"] == "not_found"  # not its own
    assert app.delete(f"/v1/voices/{own['id']}", headers=owner).status_code == 204
    assert error(app.get(f"/v1/voices/{own['id']}"))["code"] == "not_found"
    assert stored.exists(), "the admin's voice of the same clip keeps its audio"
    assert app.delete(f"/v1/voices/{same['id']}").status_code == 204 and not stored.exists()

    cloner = f"cosy-{uuid.uuid4().hex[:6]}"
    _announce_a_standin_agent(mqtt_broker, cloner, cloning=True, voices=["default"])
    _wait_eligible(app, cloner)
    used = upload(app, clip(51)).json()
    job = app.post("/v1/jobs", json={"text": "你好", "lang": "zh", "voice": used["id"]}).json()
    refused = app.delete(f"/v1/voices/{used['id']}")
    assert refused.status_code == 409 and error(refused)["code"] == "voice_in_use"
    assert job["id"] in error(refused)["text"]
    preset = app.delete("/v1/voices/default")
    assert preset.status_code == 409 and error(preset)["code"] == "preset_voice"
    assert app.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    assert app.delete(f"/v1/voices/{used['id']}").status_code == 204
    assert app.get("/v1/voices", params={"kind": "prompt"}).json() == []
