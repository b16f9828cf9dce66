"""A device's status history: real agents stopped, paused and started again on a real control plane are
recorded as offline spells with their reasons and lengths; cordon and uncordon as their own kinds; the
recording rules themselves on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import uuid
from itertools import count
from pathlib import Path

import pytest
from services import new_cluster, wait_for
from sqlmodel import Session

from control_plane import status_history
from control_plane.core.db import make_engine, upgrade
from control_plane.models import Device, DeviceStatusChange
from voicefleet.broker import MosquittoBroker
from voicefleet.processes import terminate
from voicefleet_cli.onebox import broker_login_env


@pytest.fixture
def mqtt_broker(own_broker: MosquittoBroker) -> MosquittoBroker:
    return own_broker  # other tests' retained devices would come and go in this control plane's history


def history(cluster, device: str) -> list[dict]:
    status, body = cluster.call("GET", f"/v1/devices/{device}/status-history")
    assert status == 200, body
    return body


def kinds(cluster, device: str) -> list[tuple[str, str]]:
    return [(c["kind"], c["reason"]) for c in history(cluster, device)]


def test_stop_and_start_records_an_offline_spell_and_cordons(tmp_path: Path, mqtt_broker: MosquittoBroker):
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    device = f"edge-{cluster.tag}"
    try:
        cluster.start_control_plane()
        cluster.start_agent(device)
        assert kinds(cluster, device) == [("online", "state message")]
        cluster.post(f"/v1/devices/{device}/cordon", {})
        cluster.post(f"/v1/devices/{device}/uncordon", {})
        terminate(cluster.agents[device], timeout=40)
        wait_for(lambda: history(cluster, device)[0]["kind"] == "offline", "the offline change")
        cluster.start_agent(device)
        wait_for(lambda: history(cluster, device)[0]["kind"] == "online", "the device back online")
        changes = history(cluster, device)
        assert [(c["kind"], c["reason"]) for c in changes if c["kind"] != "draining"] == [
            ("online", "state message"), ("offline", "state message"), ("uncordoned", "uncordoned by an operator"),
            ("cordoned", "cordoned by an operator"), ("online", "state message")]
        back, spell = changes[0], next(c for c in changes if c["kind"] == "offline")
        assert spell["back_at"] == back["at"] and spell["duration_s"] == pytest.approx(back["at"] - spell["at"])
        assert spell["duration_s"] > 0 and back["duration_s"] is None
        assert [c["at"] for c in changes] == sorted((c["at"] for c in changes), reverse=True)
        assert [c["cordoned"] for c in changes][-3:] == [False, True, False]
        status, body = cluster.call("GET", "/v1/devices/no-such-device/status-history")
        assert status == 404 and "no-such-device" in str(body)
        assert cluster.call("GET", f"/v1/devices/{device}/status-history?limit=0")[0] == 422
        assert len(cluster.call("GET", f"/v1/devices/{device}/status-history?limit=2")[1]) == 2
    finally:
        cluster.stop()


def test_missed_heartbeats_then_telemetry(tmp_path: Path, mqtt_broker: MosquittoBroker):
    """A paused agent is timed out ("missed heartbeats"); its next telemetry brings it back."""
    cluster = new_cluster(tmp_path, mqtt_broker.url, VOICEFLEET_HEARTBEAT_TIMEOUT_S="3")
    device = f"edge-{cluster.tag}"
    try:
        cluster.start_control_plane()
        agent = cluster.start_agent(device, VOICEFLEET_TELEMETRY_INTERVAL_S="0.5")
        os.kill(agent.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: history(cluster, device)[0]["kind"] == "offline", "the heartbeat timeout")
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        wait_for(lambda: history(cluster, device)[0]["kind"] == "online", "the device heard from again")
        changes = history(cluster, device)
        assert [(c["kind"], c["reason"]) for c in changes] == [
            ("online", "heard from again (telemetry)"), ("offline", "it missed its heartbeats"),
            ("online", "state message")]
        assert changes[1]["duration_s"] == pytest.approx(changes[0]["at"] - changes[1]["at"])
    finally:
        cluster.stop()


def test_recording_rules(database_url: str, monkeypatch: pytest.MonkeyPatch):
    """A row per status or cordon change, none for a repeat; spells measured to the next online;
    rows past 30 days pruned."""
    upgrade(database_url)
    engine = make_engine(database_url)
    dev = Device(id=f"edge-{uuid.uuid4().hex[:6]}", status="online")
    with Session(engine) as session:
        old = DeviceStatusChange(device_id=dev.id, at=1.0, kind="online", status="online", reason="long ago")
        session.add(old)
        session.commit()
        monkeypatch.setattr(status_history, "_inserts", count())  # the next insert prunes
        assert status_history.record(session, dev, "state message") is None  # same as its last row
        dev.status = "offline"
        assert status_history.record(session, dev, "it missed its heartbeats").kind == "offline"
        assert session.get(DeviceStatusChange, old.id) is None  # pruned: past 30 days
        dev.cordoned = True
        assert status_history.record(session, dev).reason == "cordoned by an operator"
        assert status_history.record(session, dev) is None
        dev.status = "draining"
        status_history.record(session, dev, "state message")
        session.commit()
        got = status_history.changes(session, dev.id, limit=10)
    engine.dispose()
    assert [(c.kind, c.status, c.cordoned) for c in got] == [
        ("draining", "draining", True), ("cordoned", "offline", True), ("offline", "offline", False)]
    assert got[2].back_at == got[0].at and got[2].duration_s == pytest.approx(got[0].at - got[2].at)
    assert got[0].duration_s is None and got[1].duration_s is None


def test_a_revoked_login_is_the_reason(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", secured=True) as broker:
        cluster = new_cluster(tmp_path, broker.url)
        device = f"hub-{cluster.tag}"
        try:
            cluster.start_control_plane(**broker_login_env(broker))
            cluster.start_agent(device, **cluster.enrol_env(device))
            cluster.post(f"/v1/devices/{device}/revoke", {})
            wait_for(lambda: history(cluster, device)[0]["kind"] == "offline", "the revoked device offline")
            assert kinds(cluster, device) == [("offline", "its login was revoked"),
                                              ("cordoned", "cordoned by an operator (its login was revoked)"),
                                              ("online", "state message")]
        finally:
            cluster.stop()
