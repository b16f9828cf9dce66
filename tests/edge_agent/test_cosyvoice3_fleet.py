"""A cloud agent whose CosyVoice3 has no default prompt, on real parts: control plane and agent as
processes on Mosquitto, the agent's CosyVoice3 engine driving the stand-in of upstream's
``CosyVoice3`` (benchmarks/cosyvoice3_standin.py, small) through upstream's module path. A plain job
goes to the next engine of its chain; a cloned-voice job to CosyVoice3, which fetches the clip from
the API; five at once run at most two at a time on the worker, the rest queued at the control plane."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from services import http, new_cluster, wait_job

from benchmarks.cloud import SLOTS, most_at_once, on_worker, queued_at_control_plane
from benchmarks.cosyvoice3_standin import SAMPLE_RATE, SAMPLES_PER_TOKEN, TOKENS_PER_CHAR, upstream_package, weights_dir
from benchmarks.signals import speechlike
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster

pytest.importorskip("resemblyzer")  # a voice upload computes its speaker embedding

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fleet(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    weights = weights_dir(tmp_path / "Fun-CosyVoice3-0.5B", "small", "cpu")
    c = new_cluster(tmp_path, mqtt_broker.url)
    try:
        c.start_control_plane()
        device = f"gpu-{c.tag}"
        c.start_agent(device, role="cloud", engine="cosyvoice3,espeak", VOICEFLEET_COSYVOICE_DIR=str(weights),
                      PYTHONPATH=f"{upstream_package(tmp_path / 'upstream')}:{ROOT}")
        yield c, device
    finally:
        c.stop()


def submit(c: Cluster, **spec) -> dict:
    r = http.post(f"{c.api}/v1/jobs", json={"text": "您好，这里是客服中心。", **spec})
    assert r.status_code == 201, r.text
    return wait_job(c.api, r.json()["id"])


def upload_voice(c: Cluster) -> str:
    buf = io.BytesIO()
    sf.write(buf, speechlike(5.0, seed=3), 24000, format="WAV", subtype="PCM_16")
    r = http.post(f"{c.api}/v1/voices", files={"file": ("me.wav", buf.getvalue(), "audio/wav")},
                  data={"transcript": "今天天气很好，我们去公园散步吧。", "consent": "the speaker agreed in writing"},
                  timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_plain_jobs_go_to_the_next_engine_and_cloned_voices_to_cosyvoice3(fleet: tuple[Cluster, str]):
    c, device = fleet
    plain = submit(c)
    assert plain["state"] == "done", plain
    assert plain["device_id"] == device and plain["spoken_by"]["engine"] == "espeak-ng", plain["spoken_by"]
    assert not plain["spoken_by"].get("fallback"), "placement itself chose the next engine"

    voice = upload_voice(c)
    cloned = submit(c, voice=voice)
    assert cloned["state"] == "done", cloned
    assert cloned["spoken_by"]["engine"] == "cosyvoice3" and cloned["spoken_by"]["voice"] == voice, cloned["spoken_by"]


def test_five_cloned_voice_jobs_run_two_at_a_time_on_the_worker_the_rest_queued_at_the_control_plane(
        fleet: tuple[Cluster, str]):
    c, device = fleet
    voice = upload_voice(c)
    texts = [f"请在{n}点提醒我开会。" + "好" * n for n in range(5)]  # each its own length
    r = http.post(f"{c.api}/v1/jobs/batch", json={"jobs": [{"text": t, "voice": voice} for t in texts]})
    assert r.status_code == 201, r.text
    jobs = [wait_job(c.api, j["id"], timeout_s=120) for j in r.json()]
    assert all(j["state"] == "done" and j["spoken_by"]["engine"] == "cosyvoice3" for j in jobs), jobs

    assert {j["device_id"] for j in jobs} == {device}
    spans = [on_worker(j) for j in jobs]  # from each job's assigned and done events
    assert most_at_once(spans) == SLOTS, f"jobs on the worker at once: {spans}"
    assert queued_at_control_plane(jobs, SLOTS) == len(jobs) - SLOTS, "the rest waited at the control plane"
    for job, text in zip(jobs, texts, strict=True):
        audio = http.get(f"{c.api}/v1/jobs/{job['id']}/audio")
        pcm, rate = sf.read(io.BytesIO(audio.content), dtype="int16")
        assert rate == SAMPLE_RATE and len(pcm) == len(text) * TOKENS_PER_CHAR * SAMPLES_PER_TOKEN, job["id"]
        assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300, "silent"
