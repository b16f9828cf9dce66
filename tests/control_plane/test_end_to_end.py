"""The whole path on real parts: HTTP submit -> control plane -> Mosquitto -> agent (eSpeak NG)
-> audio streamed back and stored. Runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

import io
import time
import wave

import numpy as np
import pytest
from services import http, wait_for, wait_job

from voicefleet_cli.onebox import Cluster

JOBS = [
    {"text": "今天下午三点提醒我开会", "lang": "zh"},
    {"text": "今天下午三点提醒我开会", "lang": "zh", "dialect": "yue"},
    {"text": "Your three o'clock meeting starts in ten minutes.", "lang": "en"},
]


def read_wav(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_speaks_mandarin_cantonese_and_english(cluster: Cluster):
    ids = []
    for spec in JOBS:
        r = http.post(f"{cluster.api}/v1/jobs", json=spec)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    for spec, job_id in zip(JOBS, ids, strict=True):
        job = wait_job(cluster.api, job_id)
        assert job["state"] == "done", job
        assert job["device_id"] in (cluster.edge_id, cluster.cloud_id)
        assert job["explain"]["picked"] == job["device_id"] and job["explain"]["candidates"]
        assert [e["kind"] for e in job["events"]][:2] == ["queued", "assigned"]
        assert job["events"][-1]["kind"] == "done"
        audio = http.get(f"{cluster.api}/v1/jobs/{job_id}/audio")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        rate, pcm = read_wav(audio.content)
        assert rate == job["sample_rate"] == 22050
        seconds = len(pcm) / rate
        assert seconds > 0.5 * len(spec["text"]) / 10, f"{seconds:.2f}s of audio for {spec['text']!r}"
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
        assert rms > 300, f"audio is near silent (RMS {rms:.0f})"


def test_first_chunk_reaches_client_before_job_finishes(cluster: Cluster):
    text = "今天下午三点提醒我开会，请准时到达会议室。" * 60  # ~1,200 characters, several minutes of audio
    job_id = http.post(f"{cluster.api}/v1/jobs", json={"text": text}).json()["id"]
    first_audio_at = None
    received = 0
    with http.stream("GET", f"{cluster.api}/v1/jobs/{job_id}/audio", timeout=60) as resp:
        assert resp.status_code == 200
        for block in resp.iter_bytes():
            received += len(block)
            if first_audio_at is None and received > 44:
                first_audio_at = time.time()
    job = wait_job(cluster.api, job_id)
    assert job["state"] == "done"
    assert first_audio_at is not None and first_audio_at < job["finished_at"], (
        f"first audio at {first_audio_at}, job finished at {job['finished_at']}: the stream was buffered")
    stored = http.get(f"{cluster.api}/v1/jobs/{job_id}/audio").content
    assert received == len(stored), "the streamed audio differs in length from the stored WAV"


@pytest.mark.parametrize("body, field, words", [
    ({"text": ""}, "text", "empty"),
    ({"text": "   "}, "text", "empty"),
    ({"text": "字" * 5000}, "text", "5000 characters"),
    ({"text": "你好", "dialect": "klingon"}, "dialect", "unknown dialect 'klingon'"),
    ({"text": "你好", "lang": "xx"}, "lang", "unknown language 'xx'"),
    ({"text": "你好", "priority": "high"}, "priority", "integer"),
    ({"lang": "zh"}, "text", "required"),
])
def test_bad_input_gets_a_4xx_naming_the_fix(cluster: Cluster, body, field, words):
    r = http.post(f"{cluster.api}/v1/jobs", json=body)
    assert r.status_code == 422
    text = r.json()["error"]["text"]
    assert text.startswith(field) and words in text, text


def test_malformed_requests_and_unservable_jobs(cluster: Cluster):
    api = cluster.api
    r = http.post(f"{api}/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]["text"]
    r = http.post(f"{api}/v1/jobs", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert r.status_code == 413
    chunked = http.post(f"{api}/v1/jobs", content=iter([b"x" * (256 << 10)] * 8),  # no Content-Length
                        headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "1048576 bytes" in chunked.json()["error"]["text"]
    small = http.post(f"{api}/v1/jobs", content=iter([b'{"text": ', rb'"\u4f60\u597d"}']),
                      headers={"content-type": "application/json"})
    assert small.status_code == 201, small.text
    r = http.post(f"{api}/v1/jobs", json={"text": "你好", "dialect": "sichuan"})
    assert r.status_code == 422 and "dialect 'sichuan'" in r.json()["error"]["text"]
    assert http.get(f"{api}/v1/jobs/nope").status_code == 404
    assert http.get(f"{api}/v1/jobs/nope/audio").status_code == 404
    assert http.get(f"{api}/v1/jobs?state=bogus").status_code == 422


def test_cancel_a_running_job(cluster: Cluster):
    job_id = http.post(f"{cluster.api}/v1/jobs", json={"text": "请稍候。" * 1200}).json()["id"]
    r = http.post(f"{cluster.api}/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert wait_job(cluster.api, job_id)["state"] == "cancelled"
    assert http.get(f"{cluster.api}/v1/jobs/{job_id}/audio").status_code == 409
    # Both devices are free again: a new job still runs.
    nxt = http.post(f"{cluster.api}/v1/jobs", json={"text": "好的"}).json()["id"]
    assert wait_job(cluster.api, nxt)["state"] == "done"


def test_health_readiness_devices_and_metrics(cluster: Cluster):
    api = cluster.api
    assert http.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = http.get(f"{api}/readyz").json()
    assert ready == {"ready": True, "checks": {"database": True, "broker": True}}
    devices = {d["id"]: d for d in http.get(f"{api}/v1/devices").json()}
    assert devices[cluster.edge_id]["role"] == "edge" and devices[cluster.cloud_id]["max_concurrency"] == 2
    assert devices[cluster.edge_id]["capabilities"]["dialects"] == ["yue"]
    job_id = http.post(f"{api}/v1/jobs", json={"text": "测试"}).json()["id"]
    wait_job(api, job_id)
    metrics = http.get(f"{api}/metrics").text
    for line in ('voicefleet_jobs{state="done"} 1.0', "voicefleet_queue_depth 0.0",
                 "voicefleet_job_first_chunk_seconds_count 1.0", "voicefleet_job_total_seconds_count 1.0",
                 f'voicefleet_device_slots{{device="{cluster.cloud_id}"}} 2.0'):
        assert line in metrics, line


def test_batch_submit_is_all_or_nothing_and_in_order(cluster: Cluster):
    api = cluster.api
    r = http.post(f"{api}/v1/jobs/batch", json={"jobs": JOBS})
    assert r.status_code == 201, r.text
    rows = r.json()
    assert [row["text"] for row in rows] == [j["text"] for j in JOBS]
    assert all(wait_job(api, row["id"])["state"] == "done" for row in rows)
    before = len(http.get(f"{api}/v1/jobs", params={"limit": 1000}).json())
    bad = http.post(f"{api}/v1/jobs/batch", json={"jobs": [JOBS[0], {"text": "你好", "dialect": "sichuan"}]})
    assert bad.status_code == 422 and bad.json()["error"]["text"].startswith("jobs[1]: "), bad.text
    invalid = http.post(f"{api}/v1/jobs/batch", json={"jobs": [JOBS[0], {"text": ""}]})
    assert invalid.status_code == 422 and invalid.json()["error"]["text"].startswith("jobs.1.text"), invalid.text
    too_many = http.post(f"{api}/v1/jobs/batch", json={"jobs": [{"text": "好"}] * 1001})
    assert too_many.status_code == 422 and "1000" in too_many.json()["error"]["text"]
    assert len(http.get(f"{api}/v1/jobs", params={"limit": 1000}).json()) == before, "a refused batch left jobs"


def test_full_queue_answers_429_with_retry_after(cluster: Cluster):
    """Past the queue bound, submit is refused early, and nothing accepted is dropped."""
    cluster.control.terminate()
    cluster.control.wait(30)
    for proc in cluster.agents.values():
        proc.terminate()
        proc.wait(30)
    cluster.start_control_plane(VOICEFLEET_MAX_QUEUED_JOBS="3")
    # One agent, busy for minutes with its first job (a benchmark-only timed engine): the rest queue.
    cluster.start_agent(f"{cluster.edge_id}-slow", engine="timed", VOICEFLEET_TIMED_RTF="100")
    busy = http.post(f"{cluster.api}/v1/jobs", json={"text": "占着"}).json()
    wait_for(lambda: http.get(f"{cluster.api}/v1/jobs/{busy['id']}").json()["state"] != "queued",
             "the slow agent to take its job")
    accepted = [http.post(f"{cluster.api}/v1/jobs", json={"text": f"第{i}条"}) for i in range(3)]
    assert [r.status_code for r in accepted] == [201, 201, 201]
    refused = http.post(f"{cluster.api}/v1/jobs", json={"text": "第四条"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    batch = http.post(f"{cluster.api}/v1/jobs/batch", json={"jobs": [{"text": "再来"}]})
    assert batch.status_code == 429
    queued = http.get(f"{cluster.api}/v1/jobs", params={"state": "queued"}).json()
    assert sorted(j["id"] for j in queued) == sorted(r.json()["id"] for r in accepted)
    # Cancelling a queued job makes room at once.
    cancelled = http.post(f"{cluster.api}/v1/jobs/{accepted[0].json()['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert http.post(f"{cluster.api}/v1/jobs", json={"text": "第四条"}).status_code == 201
    # The slow agent would finish its minutes-long job before it stops: cancel it, so it stops now.
    assert http.post(f"{cluster.api}/v1/jobs/{busy['id']}/cancel").status_code == 200
