"""Replicas share each token's rate limit through Redis (one bucket for all, not one each) and hear of
a revocation at once through the PostgreSQL relay, not after their token cache expires. Real Redis and
real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from services import wait_for

from control_plane.core.db import make_engine, upgrade
from control_plane.events import EventBus
from control_plane.live import JobWatch
from control_plane.rate_limits import SharedBuckets
from control_plane.relay import Relay
from control_plane.tokens import Role, Tokens


@pytest.fixture
def engine(pg_server):
    url = pg_server.create_database(f"t_limits_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_two_replicas_share_one_bucket_per_token(engine, redis_url):
    url, prefix = redis_url
    a, b = (Tokens(engine, SharedBuckets(url, prefix=prefix)) for _ in range(2))
    _, token = a.create(role=Role.viewer, name="slow", rate_per_s=0.01, burst=3)
    who_a, who_b = a.check(token), b.check(token)
    waits = [a.throttle(who_a), b.throttle(who_b), a.throttle(who_a), b.throttle(who_b)]
    assert waits[:3] == [0.0, 0.0, 0.0], "the burst, spent across both replicas"
    assert waits[3] > 90, "the fourth waits for the shared bucket to refill at 0.01/s"


def test_without_redis_each_replica_keeps_its_own_bucket_and_requests_never_fail(engine):
    down = SharedBuckets("redis://127.0.0.1:1/0")  # nothing listens there
    a, b = Tokens(engine, down), Tokens(engine)
    _, token = a.create(role=Role.viewer, name="slow", rate_per_s=0.01, burst=1)
    assert [a.throttle(a.check(token)), b.throttle(b.check(token))] == [0.0, 0.0], "a bucket each"
    assert a.throttle(a.check(token)) > 90 and down.take("x", 1, 1) is None, "Redis is not tried again at once"


def test_a_token_revoked_on_one_replica_is_refused_by_the_other_at_once(engine):
    url = engine.url.render_as_string(hide_password=False)
    a, b = Tokens(engine), Tokens(engine)
    relays = [Relay(url, name, EventBus(), JobWatch(), tokens) for name, tokens in (("cp-a", a), ("cp-b", b))]
    for relay in relays:
        relay.start()
    try:
        assert all(relay.listening.wait(30) for relay in relays)
        row, token = a.create(role=Role.operator, name="ops")
        assert b.check(token) is not None  # now cached on b for a few seconds
        a.revoke(row.id)
        wait_for(lambda: b.check(token) is None, "b refusing the revoked token", timeout_s=3)
    finally:
        for relay in relays:
            relay.stop()
