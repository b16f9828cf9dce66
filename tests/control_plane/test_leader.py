"""One replica leads (runs lease expiry, heartbeats, hedging and rollout ticks) by holding a PostgreSQL
advisory lock; when it closes or dies, another takes over within seconds. Real PostgreSQL, and real
control-plane processes for the death."""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
from services import http, wait_for

from control_plane.core.db import make_engine, upgrade
from control_plane.leader import CHECK_EVERY_S, Leadership
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster


def _first_to_lead(*replicas: Leadership, timeout_s: float = 30) -> Leadership:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leading = [r for r in replicas if r.check()]
        if leading:
            return leading[0]
        time.sleep(CHECK_EVERY_S / 4)
    raise AssertionError("no replica took the lead")


def test_one_of_two_replicas_leads_and_the_other_takes_over_when_it_closes(pg_server):
    engine = make_engine(pg_server.create_database(f"t_leader_{uuid.uuid4().hex[:10]}"))
    a, b = Leadership(engine, "cp-a"), Leadership(engine, "cp-b")
    try:
        first = _first_to_lead(a, b)
        other = b if first is a else a
        time.sleep(CHECK_EVERY_S * 1.5)  # past the cached answer: both ask the database again
        assert first.check() and not other.check(), "exactly one leads"
        first.close()
        assert _first_to_lead(other) is other
        assert not first.leading
    finally:
        a.close()
        b.close()
        engine.dispose()


def test_sqlite_has_one_control_plane_which_always_leads(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path}/vf.db")
    assert Leadership(engine, "cp").check()


def _leader_gauge(api: str) -> float | None:
    try:
        text = http.get(f"{api}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^voicefleet_leader (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def test_when_the_leading_control_plane_is_killed_another_leads_within_seconds(
        pg_server, mqtt_broker: MosquittoBroker, tmp_path: Path):
    url = pg_server.create_database(f"t_leader_kill_{uuid.uuid4().hex[:10]}")
    upgrade(url)  # once, before two processes race to it
    replicas = []
    for name in ("a", "b"):
        tag = f"{name}{uuid.uuid4().hex[:5]}"
        cp = Cluster(tmp_path / name, mqtt_url=mqtt_broker.url,
                     env={"VOICEFLEET_DATABASE_URL": url, "VOICEFLEET_CONTROL_ID": f"cp-{tag}",
                          "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30", "VOICEFLEET_URL_SECRET": "s" * 32})
        cp.start_control_plane()
        replicas.append(cp)
    try:
        wait_for(lambda: sorted(map(str, (_leader_gauge(cp.api) for cp in replicas))) == ["0.0", "1.0"],
                 "one leader of two, the other following")
        leader = next(cp for cp in replicas if _leader_gauge(cp.api) == 1.0)
        follower = next(cp for cp in replicas if cp is not leader)
        os.kill(leader.control.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: _leader_gauge(follower.api) == 1.0, "the other replica leading", timeout_s=30)
        assert time.monotonic() - killed < 10, "taken over within seconds"
    finally:
        for cp in replicas:
            cp.stop()


def test_a_transaction_of_a_former_leader_cannot_commit_once_a_new_term_began(pg_server):
    """The fencing token: what an old leader (that lost the lock without knowing) tries to write after
    the new one took its term rolls back, and says so."""
    from sqlmodel import Session

    from control_plane.fencing import LostLeadership, fence, take
    from control_plane.models import Replica

    url = pg_server.create_database(f"t_fence_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    engine = make_engine(url)
    try:
        old = take(engine, "cp-a")
        with fence(Session(engine), old) as session:  # its own term: writes
            session.add(Replica(id="cp-a", url="http://a", seen_at=1.0))
            session.commit()
        assert take(engine, "cp-b") == old + 1
        with fence(Session(engine), old) as session, pytest.raises(LostLeadership, match="term"):
            session.add(Replica(id="cp-x", url="http://x", seen_at=2.0))
            session.commit()
        with Session(engine) as session:
            assert session.get(Replica, "cp-x") is None and session.get(Replica, "cp-a") is not None
    finally:
        engine.dispose()
