"""Replicas hear each other's changes through PostgreSQL LISTEN/NOTIFY (control_plane/relay.py): console
events and job wake-ups published on one reach the others' buses and watches, once, in order, packed
under NOTIFY's size limit; a broken listening connection comes back and says ``reset``. Real PostgreSQL,
and real control-plane processes for a job submitted on one replica seen in another's event stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from services import ADMIN_TOKEN, wait_for

from control_plane.core.db import upgrade
from control_plane.events import EventBus
from control_plane.live import JobWatch
from control_plane.relay import CHANNEL, MAX_PAYLOAD, Relay, _libpq_url, _pack
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster


@pytest.fixture
def replicas(pg_server):
    url = pg_server.create_database(f"t_relay_{uuid.uuid4().hex[:10]}")
    pair = [Relay(url, name, EventBus(first_id=1), JobWatch()) for name in ("cp-a", "cp-b")]
    for relay in pair:
        relay.start()
    for relay in pair:
        assert relay.listening.wait(30)
    yield pair
    for relay in pair:
        relay.stop()


async def _events(bus: EventBus, count: int, timeout_s: float = 30) -> list:
    sub, got = bus.subscribe(after=0), []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += await sub.next(timeout=1)
    sub.close()
    return got


def test_an_event_on_one_replica_reaches_the_other_once_and_is_not_echoed(replicas):
    a, b = replicas
    a.bus.publish("job", {"id": "j1", "state": "queued"}, owner="alice")
    a.bus.publish("device", {"id": "edge-1", "status": "online"})
    got = asyncio.run(_events(b.bus, 2))
    assert [(e.kind, e.data, e.owner) for e in got] == [("job", {"id": "j1", "state": "queued"}, "alice"),
                                                        ("device", {"id": "edge-1", "status": "online"}, None)]
    time.sleep(1)  # what would have echoed back to a has had time to
    assert a.bus.last_id == 2 and b.bus.last_id == 2, "each change once on each replica"


def test_a_job_woken_on_one_replica_wakes_its_followers_on_the_other(replicas):
    a, b = replicas

    async def follow() -> bool:
        loop_wake = b.watch.subscribe("job-7")
        try:
            a.watch.notify("job-7")
            await asyncio.wait_for(loop_wake[1].wait(), 30)
            return True
        finally:
            b.watch.unsubscribe("job-7", loop_wake)

    assert asyncio.run(follow())


def test_many_changes_are_packed_under_the_payload_limit_and_arrive_in_order(replicas):
    a, b = replicas
    for i in range(300):
        a.bus.publish("job", {"id": f"job-{i:03d}", "text": "长" * 40})
    got = asyncio.run(_events(b.bus, 300))
    assert [e.data["id"] for e in got] == [f"job-{i:03d}" for i in range(300)]
    payloads = _pack("cp-a", [("e", ["job", {"id": f"j{i}", "text": "长" * 40}, None]) for i in range(300)]
                     + [("j", "same")] * 5)
    assert len(payloads) > 1 and all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    assert sum(json.loads(p)["j"].count("same") for p in payloads) == 1, "a job woken twice is sent once"


def test_a_broken_listening_connection_comes_back_and_tells_its_streams_to_reset(replicas, pg_server):
    a, b = replicas
    with psycopg.connect(_libpq_url(b.url), autocommit=True) as admin:
        killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE query LIKE %s AND pid <> pg_backend_pid() AND datname = current_database()",
                               (f"LISTEN {CHANNEL}%",)).fetchall()
    assert len(killed) == 2, "both replicas' listening connections"
    wait_for(lambda: not b.listening.is_set() or b.bus.last_id > 0, "b noticing")
    assert b.listening.wait(30)
    got = asyncio.run(_events(b.bus, 1))
    assert got[0].kind == "reset" and "reload" in got[0].data["reason"]
    a.bus.publish("job", {"id": "after"})
    assert any(e.data.get("id") == "after" for e in asyncio.run(_events(b.bus, 2)))


def test_a_cordon_on_one_control_plane_shows_in_anothers_event_stream(
        pg_server, mqtt_broker: MosquittoBroker, tmp_path: Path):
    url = pg_server.create_database(f"t_relay_cp_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    pair, device = [], f"edge-{uuid.uuid4().hex[:6]}"
    try:
        for name in ("a", "b"):
            env = {"VOICEFLEET_DATABASE_URL": url, "VOICEFLEET_CONTROL_ID": f"cp-{name}{uuid.uuid4().hex[:5]}",
                   "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30", "VOICEFLEET_URL_SECRET": "s" * 32}
            cp = Cluster(tmp_path / name, mqtt_url=mqtt_broker.url, env=env)
            cp.start_control_plane()
            pair.append(cp)
        a, b = pair
        a.start_agent(device)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.stream("GET", f"{b.api}/v1/events", headers=headers, timeout=60) as stream:
            lines = stream.iter_lines()
            a.post(f"/v1/devices/{device}/cordon", {})  # only a knows: b hears it from the relay
            for line in lines:
                if line.startswith("data:") and device in line and "cordon" in line:
                    break
    finally:
        for cp in pair:
            cp.stop()
