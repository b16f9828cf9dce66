"""Jobs that ask for a cloned voice, a dialect (directly, by region or by instruction) or carry inline
pronunciation, on real parts: control plane and agents (the benchmark-only timed engine; one
advertises cloning and instructions as a stand-in for a CosyVoice3 GPU worker, which needs a GPU
and weights this machine lacks) as processes on Mosquitto."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

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


def upload_voice(c: Cluster) -> str:
    buf = io.BytesIO()
    sf.write(buf, speechlike(5.0, seed=3), 24000, format="WAV", subtype="PCM_16")
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


def test_a_cloned_voice_job_carries_its_prompt_for_the_cloning_engine(fleet: Cluster, mqtt_broker: MosquittoBroker):
    import hashlib
    import threading

    from paho.mqtt import subscribe

    from voicefleet import protocol as p

    gpu = start(fleet, "gpu-standin", VOICEFLEET_TIMED_CLONING="1", VOICEFLEET_ROLE="cloud")
    voice = upload_voice(fleet)
    seen: list = []
    listener = threading.Thread(target=lambda: seen.append(subscribe.simple(
        p.device_topic(gpu, "job"), hostname="127.0.0.1", port=mqtt_broker.port, qos=1, msg_count=1,
        protocol=5)))
    listener.start()
    time.sleep(0.5)
    assert run(fleet, voice=voice)["device_id"] == gpu
    listener.join(20)
    assignment, _ = p.decode("job", seen[0].payload)
    prompt = assignment.prompt
    assert prompt.voice_id == voice and prompt.transcript == "今天天气很好，我们去公园散步吧。"
    wav = http.get(prompt.audio_url).content
    assert wav[:4] == b"RIFF" and hashlib.sha256(wav).hexdigest() == prompt.sha256
