"""Routing on real parts: a control plane and agents (the benchmark-only timed engine, so jobs take a
known time) as processes on Mosquitto. Capabilities, the health gate, priority and deadlines,
overload, and the explanation each job carries."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from services import http, new_cluster, wait_for

from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster


@pytest.fixture
def fleet(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[Cluster]:
    """A control plane with quick heartbeats and no agents yet; ids unique per test."""
    c = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_HEARTBEAT_TIMEOUT_S="2", VOICEFLEET_OFFLINE_GRACE_S="5",
                    VOICEFLEET_TELEMETRY_INTERVAL_S="0.3")
    try:
        c.start_control_plane()
        yield c
    finally:
        c.stop()


def agent(c: Cluster, name: str, *, rtf: float = 0.001, dialects: str = "", slots: int = 1, role: str = "edge") -> str:
    device = f"{name}-{c.tag}"
    c.start_agent(device, role=role, engine="timed", VOICEFLEET_TIMED_RTF=str(rtf),
                  VOICEFLEET_TIMED_DIALECTS=dialects, VOICEFLEET_MAX_CONCURRENCY=str(slots),
                  VOICEFLEET_DRAIN_TIMEOUT_S="1")  # a slow agent's jobs need not finish at teardown
    wait_for(lambda: device_info(c, device)["eligible"], f"{device} eligible")
    return device


def device_info(c: Cluster, device: str) -> dict:
    return http.get(f"{c.api}/v1/devices/{device}").json()


def submit(c: Cluster, **spec) -> httpx.Response:
    return http.post(f"{c.api}/v1/jobs", json={"text": "今天下午三点提醒我开会", **spec})


def job(c: Cluster, job_id: str) -> dict:
    return http.get(f"{c.api}/v1/jobs/{job_id}").json()


def wait_done(c: Cluster, job_id: str) -> dict:
    wait_for(lambda: job(c, job_id)["state"] in ("done", "failed"), f"job {job_id}")
    return job(c, job_id)


def test_a_cantonese_job_never_reaches_a_mandarin_only_agent(fleet: Cluster):
    mandarin = agent(fleet, "mandarin", role="cloud", slots=2)
    cantonese = agent(fleet, "cantonese", rtf=0.01, dialects="yue")
    ids = [submit(fleet, dialect="yue").json()["id"] for _ in range(4)]
    for job_id in ids:
        done = wait_done(fleet, job_id)
        assert done["state"] == "done" and done["device_id"] == cantonese
        verdicts = {c["device"]: c["verdict"] for c in done["explain"]["candidates"]}
        assert verdicts[mandarin] == "cannot serve dialect 'yue'"
    refused = submit(fleet, instruction="用悲伤的语气说")
    assert refused.status_code == 422 and "style instructions" in refused.json()["error"]["text"]


def test_a_job_whose_only_capable_agent_is_down_is_refused_naming_it(fleet: Cluster):
    """Within the grace period (5 s here: longer than a busy machine takes from seeing the last will to
    submitting) the job is accepted and waits; after it, refused."""
    agent(fleet, "mandarin")
    cantonese = agent(fleet, "cantonese", dialects="yue")
    fleet.agents[cantonese].send_signal(signal.SIGKILL)  # its last will marks it offline
    wait_for(lambda: device_info(fleet, cantonese)["status"] == "offline", "the last will")
    waiting = submit(fleet, dialect="yue")
    assert waiting.status_code == 201 and waiting.json()["state"] == "queued"
    refused = wait_for(lambda: (r := submit(fleet, dialect="yue")).status_code == 422 and r, "the end of the grace", 30)
    assert f"{cantonese} (offline)" in refused.json()["error"]["text"]


def test_cordoned_and_silent_agents_get_no_new_jobs(fleet: Cluster):
    fast = agent(fleet, "fast", rtf=0.001)
    spare = agent(fleet, "spare", rtf=1.0)  # 0.6 s a job: slower than "fast" by far more than a busy box's jitter
    # equal priors, ties by id: the first job teaches the scheduler that "fast" is fast
    assert wait_done(fleet, submit(fleet).json()["id"])["device_id"] == fast
    assert http.post(f"{fleet.api}/v1/devices/{fast}/cordon").json()["gate"] == "cordoned by an operator"
    for job_id in [submit(fleet).json()["id"] for _ in range(3)]:
        assert wait_done(fleet, job_id)["device_id"] == spare
    assert http.post(f"{fleet.api}/v1/devices/{fast}/uncordon").json()["eligible"] is True
    assert wait_done(fleet, submit(fleet).json()["id"])["device_id"] == fast  # the faster one again

    os.kill(fleet.agents[fast].pid, signal.SIGSTOP)  # alive for TCP, silent for us
    try:
        wait_for(lambda: device_info(fleet, fast)["status"] == "offline", "heartbeat timeout", 15)
        for job_id in [submit(fleet).json()["id"] for _ in range(2)]:
            assert wait_done(fleet, job_id)["device_id"] == spare
    finally:
        os.kill(fleet.agents[fast].pid, signal.SIGCONT)
    # back: eligible again only once a live heartbeat has arrived
    wait_for(lambda: device_info(fleet, fast)["eligible"], "the agent to come back", 30)


def test_interactive_jobs_go_ahead_of_batch_and_the_fast_agent_is_waited_for(fleet: Cluster):
    fast = agent(fleet, "fast", rtf=0.02, role="cloud")
    slow = agent(fleet, "slow", rtf=2.0)
    text = "这是一段用来测试调度顺序的文字" * 4  # 60 characters, ~3.6 s of audio: 0.07 s on fast, 7 s on slow
    # One job first, so the fleet's speech rate is learned rather than the prior (with priors, a burst
    # planned before anything finished may rightly try the idle slow agent).
    assert wait_done(fleet, submit(fleet, text=text).json()["id"])["device_id"] == fast
    batch = [submit(fleet, text=text, tier="batch").json()["id"] for _ in range(4)]
    interactive = [submit(fleet, text=text, deadline_s=5).json()["id"] for _ in range(2)]
    done = {job_id: wait_done(fleet, job_id) for job_id in batch + interactive}
    assert {d["device_id"] for d in done.values()} == {fast}, "a slow free agent took work the fast one does sooner"
    started = {job_id: d["assigned_at"] for job_id, d in done.items()}
    # all of the interactive jobs were given out before the last batch ones
    assert max(started[j] for j in interactive) < max(started[j] for j in batch)
    explain = done[interactive[0]]["explain"]
    assert explain["policy"] == "latency" and explain["expected_s"] > 0
    by_device = {c["device"]: c for c in explain["candidates"]}
    assert by_device[slow]["service_s"] > 10 * by_device[fast]["service_s"]


def test_a_full_tier_answers_429_with_retry_after_while_the_other_tier_is_accepted(
        mqtt_broker: MosquittoBroker, tmp_path: Path):
    c = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_MAX_QUEUED_BATCH="2")
    try:
        c.start_control_plane()
        agent(c, "busy", rtf=100)  # its first job takes minutes: the rest queue
        first = submit(c).json()["id"]
        wait_for(lambda: job(c, first)["state"] != "queued", "the first job to start")
        accepted = [submit(c, tier="batch").status_code for _ in range(2)]
        refused = submit(c, tier="batch")
        assert accepted == [201, 201] and refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full" and "batch" in refused.json()["error"]["text"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert submit(c).status_code == 201  # the interactive queue has room
    finally:
        c.stop()


def test_a_job_stuck_on_an_agent_that_turned_slow_is_handed_to_another(fleet: Cluster):
    """The agent turns slow on its second job (a job count, not a clock, so a busy machine cannot make
    the first job slow too): 10,000 x its RTF, a minute for what it did in 6 ms."""
    turned = f"turned-{fleet.tag}"
    fleet.start_agent(turned, engine="timed", VOICEFLEET_TIMED_RTF="0.01", VOICEFLEET_TIMED_SLOWDOWN="10000",
                      VOICEFLEET_TIMED_SLOWDOWN_AFTER_JOBS="1", VOICEFLEET_DRAIN_TIMEOUT_S="1")
    wait_for(lambda: device_info(fleet, turned)["eligible"], "the agent")
    steady = agent(fleet, "zz-steady", rtf=0.05)
    assert wait_done(fleet, submit(fleet).json()["id"])["device_id"] == turned  # learnt: it is fast
    stuck = submit(fleet).json()["id"]  # 10 characters: 0.006 s expected there, 60 s now
    done = wait_done(fleet, stuck)  # within wait_done's 30 s only if it was handed on
    assert done["state"] == "done" and done["device_id"] == steady
    returned = [e for e in done["events"] if e["kind"] == "returned"]
    assert returned and returned[0]["device_id"] == turned and "hedged" in returned[0]["detail"]["reason"]
    assert done["finished_at"] - done["created_at"] < 30  # not the 60 s it would have taken
