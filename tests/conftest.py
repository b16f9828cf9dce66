"""Shared fixtures: real services started once per test session (see tests/services.py).

- ``mqtt_broker``: a Mosquitto child process on a free loopback port. It is shared: a test
  that restarts or reconfigures a broker starts its own ``MosquittoBroker`` in ``tmp_path``.
- ``pg_server``: a throwaway PostgreSQL cluster (or ``VOICEFLEET_TEST_PG_URL``).
- ``database_url``: a fresh, empty database per test, once on SQLite and once on PostgreSQL.
- ``redis_url``: the local Redis (or ``VOICEFLEET_TEST_REDIS_URL``) and a key prefix of the test's own.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import PostgresServer

from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long test (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker for one test alone: the shared one keeps other tests' retained device states, which a
    control plane would count among its devices (override ``mqtt_broker`` with it where that matters)."""
    with MosquittoBroker(tmp_path / "own-broker") as broker:
        yield broker


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy URL of an empty database of each kind; PostgreSQL starts only when asked for."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/voicefleet.db"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(_database_name(request.node.name))


def _database_name(test_name: str) -> str:
    """Unique, and readable in psql: the test's name plus a random suffix."""
    stem = re.sub(r"[^a-z0-9]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cluster(database_url: str, mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[Cluster]:
    """A control plane on ``database_url`` with an edge and a cloud agent (eSpeak NG), as real
    processes. Ids are unique per test because the broker (and its retained states) is shared."""
    tag = uuid.uuid4().hex[:6]
    c = Cluster(tmp_path / "home", mqtt_url=mqtt_broker.url,
                env={"VOICEFLEET_DATABASE_URL": database_url, "VOICEFLEET_CONTROL_ID": f"control-{tag}",
                     "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30", "VOICEFLEET_LOG_LEVEL": "INFO"})
    c.edge_id, c.cloud_id = f"edge-{tag}", f"cloud-{tag}"
    try:
        c.start_control_plane()
        c.start_agent(c.edge_id, role="edge")
        c.start_agent(c.cloud_id, role="cloud")
        yield c
    finally:
        c.stop()


@pytest.fixture
def redis_url() -> Iterator[tuple[str, str]]:
    """Real Redis (VOICEFLEET_TEST_REDIS_URL or localhost) and a key prefix of this test's own."""
    redis = pytest.importorskip("redis")
    url = os.environ.get("VOICEFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):  # .ci/run starts Redis: missing there is a failure, not a skip
            raise
        pytest.skip(f"Redis at {url} unreachable: {exc}")
    prefix = f"vftest:{uuid.uuid4().hex}:"
    yield url, prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
