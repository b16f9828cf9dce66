"""Control-plane replicas on one PostgreSQL and one broker: the leader runs the dispatcher, a follower
forwards every change to it and serves reads itself; when the leader is killed, the follower takes the
lead and the broker's session with it, and every accepted job is done once with its audio. Real
PostgreSQL, Mosquitto, control planes and an eSpeak NG agent, as processes."""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest
from services import free_port, http, wait_for, wait_job

from control_plane.core.db import upgrade
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster


def _speech(data: bytes) -> float:
    """Seconds of audio in a WAV, after checking it is heard (not silence)."""
    with wave.open(io.BytesIO(data)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        assert np.sqrt(np.mean(pcm**2)) > 300, "speech, not silence"
        return len(pcm) / w.getframerate()


def _role(api: str) -> dict:
    try:
        return http.get(f"{api}/readyz", timeout=5).json()["checks"]
    except Exception:
        return {}


@pytest.fixture
def pair(pg_server, mqtt_broker: MosquittoBroker, tmp_path: Path):
    url = pg_server.create_database(f"t_replicas_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    tag = uuid.uuid4().hex[:6]
    shared = {"VOICEFLEET_DATABASE_URL": url, "VOICEFLEET_MQTT_CLIENT_ID": f"dispatcher-{tag}",
              "VOICEFLEET_AUDIO_DIR": str(tmp_path / "audio"), "VOICEFLEET_URL_SECRET": "s" * 32,
              "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "60"}
    made = []
    for name in ("a", "b"):
        port = free_port()
        cp = Cluster(tmp_path / name, mqtt_url=mqtt_broker.url, http_port=port,
                     env=shared | {"VOICEFLEET_CONTROL_ID": f"cp-{name}-{tag}"})
        made.append(cp)
    a, b = made
    a.start_control_plane()  # first: it takes the lead
    wait_for(lambda: "broker" in _role(a.api), "a leading")
    b.start_control_plane()
    assert "leader" in _role(b.api), "b follows"
    a.device = f"edge-{tag}"
    a.start_agent(a.device)
    yield a, b
    for cp in made:
        cp.stop()


def test_a_follower_queues_jobs_itself_forwards_other_changes_and_serves_reads(pair):
    a, b = pair
    job = http.post(f"{b.api}/v1/jobs", json={"text": "Spoken through the follower.", "lang": "en"})
    assert job.status_code == 201, job.text  # written by the follower, the leader told by NOTIFY
    done = wait_job(b.api, job.json()["id"])
    assert done["state"] == "done" and done["device_id"] == a.device
    assert _speech(http.get(f"{b.api}/v1/jobs/{done['id']}/audio").content) > 0.5
    cordon = http.post(f"{b.api}/v1/devices/{a.device}/cordon")  # the leader's to run: forwarded
    assert cordon.status_code == 200, cordon.text
    wait_for(lambda: http.get(f"{b.api}/v1/devices/{a.device}").json()["cordoned"], "the cordon seen by the follower")
    audit = http.get(f"{a.api}/v1/audit").json()
    assert sorted((e["path"], e["status"]) for e in audit) == [(f"/v1/devices/{a.device}/cordon", 200),
                                                               ("/v1/jobs", 201)], "each call audited once"
    text = http.get(f"{b.api}/metrics").text
    assert "voicefleet_forwarded_requests_total 1.0" in text, "only the cordon went to the leader"


def test_when_the_leader_is_killed_the_follower_leads_and_every_accepted_job_is_done_once(pair):
    a, b = pair
    before = [http.post(f"{b.api}/v1/jobs", json={"text": f"Job {i} before the leader dies.", "lang": "en"})
              for i in range(6)]
    assert all(r.status_code == 201 for r in before), [r.text for r in before]
    os.kill(a.control.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: "broker" in _role(b.api), "b leading", timeout_s=30)
    took_over_s = time.monotonic() - killed
    after = http.post(f"{b.api}/v1/jobs", json={"text": "A job after the takeover.", "lang": "en"})
    assert after.status_code == 201, after.text
    for r in [*before, after]:
        job = wait_job(b.api, r.json()["id"], timeout_s=120)
        assert job["state"] == "done", job
        assert sum(e["kind"] == "done" for e in job["events"]) == 1, job["events"]
        assert _speech(http.get(f"{b.api}/v1/jobs/{job['id']}/audio").content) > 0.5
    assert took_over_s < 10, took_over_s


def test_a_client_following_a_job_on_the_follower_hears_it_while_the_leader_receives_it(pair):
    a, b = pair
    a.start_agent(f"slow-{a.device}", engine="timed", VOICEFLEET_TIMED_RTF="1.0", VOICEFLEET_TIMED_LANGUAGES="zh")
    text = "这是一段要说好几秒钟的话，用来跟读直播的声音。"
    job = http.post(f"{b.api}/v1/jobs", json={"text": text, "lang": "zh"}).json()
    heard, live = bytearray(), False
    with http.stream("GET", f"{b.api}/v1/jobs/{job['id']}/audio", timeout=60) as stream:
        for block in stream.iter_bytes():
            heard += block
            if len(heard) > 44 and not live:  # audio past the header
                live = http.get(f"{b.api}/v1/jobs/{job['id']}").json()["state"] == "running"
    done = wait_job(b.api, job["id"])
    assert done["state"] == "done" and done["device_id"] == f"slow-{a.device}", done
    assert live, "audio reached the follower's client while the job was still running"
    stored = http.get(f"{b.api}/v1/jobs/{job['id']}/audio").content
    assert bytes(heard[44:]) == stored[44:], "all of it, as stored"


def test_up_with_replicas_needs_a_postgresql_and_says_so(tmp_path: Path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEFLEET_")} | {"VOICEFLEET_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "voicefleet_cli", "up", "--replicas", "3", "--port", str(free_port())],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "VOICEFLEET_DATABASE_URL" in run.stderr and "PostgreSQL" in run.stderr, run.stderr
