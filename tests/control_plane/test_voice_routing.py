"""Jobs that ask for a cloned voice, a dialect (directly, by region or by instruction) or carry inline
pronunciation, on real parts: control plane and agents (the benchmark-only timed engine; one
advertises cloning and instructions as a stand-in for a CosyVoice3 GPU worker, which needs a GPU
and weights this machine lacks) as processes on Mosquitto."""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import soundfile as sf
from services import http, new_cluster

from benchmarks.signals import speechlike
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster

pytest.importorskip("resemblyzer")


@pytest.fixture
def fleet(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[Cluster]:
    c = new_cluster(tmp_path, mqtt_broker.url)
    try:
        c.start_control_plane()
        yield c
    finally:
        c.stop()


def start(c: Cluster, name: str, **env: str) -> str:
    device = f"{name}-{c.tag}"
    c.start_agent(device, engine="timed", VOICEFLEET_TIMED_RTF="0.001", **env)
    return device


def upload_voice(c: Cluster, seed: int = 3) -> str:
    buf = io.BytesIO()
    sf.write(buf, speechlike(5.0, seed=seed), 24000, format="WAV", subtype="PCM_16")
    r = http.post(f"{c.api}/v1/voices", files={"file": ("me.wav", buf.getvalue(), "audio/wav")},
                   data={"transcript": "今天天气很好，我们去公园散步吧。", "consent": "the speaker agreed in writing"},
                   timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def run(c: Cluster, **spec) -> dict:
    r = http.post(f"{c.api}/v1/jobs", json={"text": "您好，这里是客服中心", **spec})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    for _ in range(400):
        job = http.get(f"{c.api}/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_prompt_voice_goes_only_to_a_cloning_agent_and_is_refused_when_none_is_online(fleet: Cluster):
    start(fleet, "hub")
    voice = upload_voice(fleet)
    refused = http.post(f"{fleet.api}/v1/jobs", json={"text": "你好", "voice": voice})
    assert refused.status_code == 422
    assert f"voice {voice!r}" in refused.json()["error"]["text"] and "clone" in refused.json()["error"]["text"]
    unknown = http.post(f"{fleet.api}/v1/jobs", json={"text": "你好", "voice": "nobody"})
    assert unknown.status_code == 422 and "unknown voice 'nobody'" in unknown.json()["error"]["text"]

    gpu = start(fleet, "gpu-standin", VOICEFLEET_TIMED_CLONING="1", VOICEFLEET_TIMED_INSTRUCTIONS="1",
                VOICEFLEET_ROLE="cloud")
    for _ in range(3):
        assert run(fleet, voice=voice)["device_id"] == gpu
    listed = {v["id"]: v for v in http.get(f"{fleet.api}/v1/voices").json()}
    assert gpu in listed[voice]["servable_by"]


def test_dialect_by_name_region_and_instruction(fleet: Cluster):
    start(fleet, "mandarin")
    cantonese = start(fleet, "cantonese", VOICEFLEET_TIMED_DIALECTS="yue")
    assert run(fleet, dialect="粤语")["device_id"] == cantonese
    by_region = run(fleet, dialect="auto", region="440100")  # Guangzhou
    assert (by_region["dialect"], by_region["device_id"]) == ("yue", cantonese)
    sichuan = run(fleet, dialect="auto", region="成都")  # nobody speaks Sichuanese: Mandarin
    assert sichuan["dialect"] is None and sichuan["state"] == "done"
    spoken = run(fleet, instruction="请用广东话说这句话")
    assert (spoken["dialect"], spoken["device_id"]) == ("yue", cantonese)
    styled = http.post(f"{fleet.api}/v1/jobs", json={"text": "你好", "instruction": "用悲伤的语气说"})
    assert styled.status_code == 422 and "style instructions" in styled.json()["error"]["text"]


def test_malformed_inline_pronunciation_is_refused_with_its_position(fleet: Cluster):
    start(fleet, "mandarin")
    assert run(fleet, text="她[h][ào]干净")["state"] == "done"
    bad = http.post(f"{fleet.api}/v1/jobs", json={"text": "她[x][ào]干净"})
    assert bad.status_code == 422
    assert "position 1" in bad.json()["error"]["text"]


def listen(mqtt_broker: MosquittoBroker, topic: str) -> tuple[Any, queue.Queue]:
    """A started paho client subscribed to ``topic`` (returns once the broker confirmed it) and its messages."""
    import paho.mqtt.client as paho

    got: queue.Queue = queue.Queue()
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = lambda _c, _u, msg: got.put(msg)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", mqtt_broker.port)
    client.loop_start()
    assert subscribed.wait(30), f"no subscription to {topic}"
    return client, got


def test_a_cloned_voice_job_carries_its_prompt_for_the_cloning_engine(fleet: Cluster, mqtt_broker: MosquittoBroker):
    """The prompt's URL opens its clip without any token (as the cloning engine fetches it); the same
    URL with its signature or expiry changed, or its signature on another voice's path, is refused."""
    from voicefleet import protocol as p

    gpu = start(fleet, "gpu-standin", VOICEFLEET_TIMED_CLONING="1", VOICEFLEET_ROLE="cloud")
    voice, other = upload_voice(fleet), upload_voice(fleet, seed=4)
    client, got = listen(mqtt_broker, p.device_topic(gpu, "job"))
    try:
        assert run(fleet, voice=voice)["device_id"] == gpu
        assignment, _ = p.decode("job", got.get(timeout=30).payload)
    finally:
        client.loop_stop()
        client.disconnect()
    prompt = assignment.prompt
    assert prompt.voice_id == voice and prompt.transcript == "今天天气很好，我们去公园散步吧。"
    wav = httpx.get(prompt.audio_url)  # no token: the URL's signature is the only credential
    assert wav.status_code == 200, wav.text
    assert wav.content[:4] == b"RIFF" and hashlib.sha256(wav.content).hexdigest() == prompt.sha256
    url = urlsplit(prompt.audio_url)
    query = parse_qs(url.query)
    sig, exp = query["sig"][0], query["exp"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    for path, changed in ((url.path, {"sig": flipped, "exp": exp}), (url.path, {"sig": sig, "exp": str(int(exp) + 60)}),
                          (url.path.replace(voice, other), {"sig": sig, "exp": exp})):
        refused = httpx.get(f"{url.scheme}://{url.netloc}{path}", params=changed)
        assert refused.status_code in (401, 403), (path, changed, refused.status_code)
