"""The real services the other tests rely on: a spawned Mosquitto and a throwaway PostgreSQL."""

from __future__ import annotations

import queue
import socket
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from services import PostgresServer

from voicefleet import broker as broker_module
from voicefleet.broker import BrokerUnavailable, MosquittoBroker, free_port

TIMEOUT_S = 10.0


class _Client:
    """A paho-mqtt 2.x MQTT 5 client whose callbacks feed queues the test can wait on."""

    def __init__(self, broker: MosquittoBroker, client_id: str | None = None) -> None:
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connacks: queue.Queue[bool] = queue.Queue()
        self._subacks: queue.Queue[list] = queue.Queue()
        self.broker = broker
        self.mqtt = self._new_paho()

    def _new_paho(self) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.on_connect = lambda c, u, flags, rc, props: self._connacks.put(flags.session_present)
        client.on_message = lambda c, u, msg: self.messages.put(msg)
        client.on_subscribe = lambda c, u, mid, codes, props: self._subacks.put(codes)
        return client

    def connect(self, persistent: bool = False) -> bool:
        """Connect and return the broker's session_present flag."""
        props = None
        if persistent:
            # Without a session expiry interval the broker drops the session on disconnect.
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.mqtt.connect(self.broker.host, self.broker.port, clean_start=not persistent, properties=props)
        self.mqtt.loop_start()
        return self._connacks.get(timeout=TIMEOUT_S)

    def subscribe(self, topic: str) -> None:
        self.mqtt.subscribe(topic, qos=1)
        codes = self._subacks.get(timeout=TIMEOUT_S)
        assert [code.value for code in codes] == [1], codes  # granted QoS 1

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.mqtt.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT_S)  # PUBACK received: the broker holds the message
        assert info.is_published()

    def receive(self, count: int) -> list[mqtt.MQTTMessage]:
        return [self.messages.get(timeout=TIMEOUT_S) for _ in range(count)]

    def disconnect(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def reset(self) -> None:
        """A fresh paho client with the same client id (a device rebooting)."""
        self.mqtt = self._new_paho()


@pytest.fixture
def topic() -> str:
    return f"vf/v1/test/{uuid.uuid4().hex[:8]}"


# -- Mosquitto -------------------------------------------------------------------------------


def test_broker_url_and_config(mqtt_broker: MosquittoBroker) -> None:
    assert mqtt_broker.is_running()
    assert mqtt_broker.url == f"mqtt://127.0.0.1:{mqtt_broker.port}"
    config = mqtt_broker.config_path.read_text()
    assert f"listener {mqtt_broker.port} 127.0.0.1" in config
    assert "persistence true" in config
    assert "running" in mqtt_broker.log_path.read_text()


def test_qos1_publish_is_received(mqtt_broker: MosquittoBroker, topic: str) -> None:
    sub, pub = _Client(mqtt_broker), _Client(mqtt_broker)
    sub.connect()
    sub.subscribe(topic)
    pub.connect()
    pub.publish(topic, b"hello")
    [msg] = sub.receive(1)
    assert (msg.topic, msg.payload, msg.qos) == (topic, b"hello", 1)
    sub.disconnect()
    pub.disconnect()


def test_one_mib_payload_fits(mqtt_broker: MosquittoBroker, topic: str) -> None:
    from voicefleet.protocol import MAX_PAYLOAD_BYTES

    payload = bytes(range(256)) * (MAX_PAYLOAD_BYTES // 256)
    sub, pub = _Client(mqtt_broker), _Client(mqtt_broker)
    sub.connect()
    sub.subscribe(topic)
    pub.connect()
    pub.publish(topic, payload)
    [msg] = sub.receive(1)
    assert msg.payload == payload
    sub.disconnect()
    pub.disconnect()


def test_persistent_session_queues_while_offline(mqtt_broker: MosquittoBroker, topic: str) -> None:
    sub, pub = _Client(mqtt_broker), _Client(mqtt_broker)
    assert sub.connect(persistent=True) is False
    sub.subscribe(topic)
    sub.disconnect()
    pub.connect()
    for i in range(50):
        pub.publish(topic, f"job {i}".encode())
    sub.reset()
    assert sub.connect(persistent=True) is True
    assert [m.payload for m in sub.receive(50)] == [f"job {i}".encode() for i in range(50)]
    sub.disconnect()
    pub.disconnect()


def test_persistent_session_survives_broker_restart(tmp_path: Path, topic: str) -> None:
    with MosquittoBroker(tmp_path / "broker") as broker:
        port = broker.port
        sub, pub = _Client(broker), _Client(broker)
        sub.connect(persistent=True)
        sub.subscribe(topic)
        sub.disconnect()
        pub.connect()
        pub.publish(topic, b"before restart")
        pub.disconnect()

        first_pid = broker.pid
        broker.restart()
        assert broker.port == port and broker.pid != first_pid

        pub.reset()
        pub.connect()
        pub.publish(topic, b"after restart")  # the subscription itself was restored
        sub.reset()
        assert sub.connect(persistent=True) is True
        assert [m.payload for m in sub.receive(2)] == [b"before restart", b"after restart"]
        sub.disconnect()
        pub.disconnect()
    assert not broker.is_running()


def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path, persistence=False).start()
    assert "persistence false" in broker.config_path.read_text()
    broker.stop()
    broker.stop()
    assert not broker.is_running()
    with socket.socket() as sock:  # nobody listens there any more
        assert sock.connect_ex((broker.host, broker.port)) != 0


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = MosquittoBroker(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(BrokerUnavailable, match="Address already in use"):
            broker.start()
    assert not broker.is_running()


def test_missing_binary_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(broker_module, "MOSQUITTO_PATHS", ())
    with pytest.raises(BrokerUnavailable, match="apt-get install mosquitto"):
        MosquittoBroker(tmp_path)


def test_free_port_is_bindable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


# -- PostgreSQL ------------------------------------------------------------------------------


def test_database_url_answers(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar_one() == 1
    engine.dispose()


def test_skip_locked_hands_each_row_to_one_claimer(pg_server: PostgresServer) -> None:
    engine = sa.create_engine(pg_server.create_database(f"skip_{uuid.uuid4().hex[:8]}"))
    with engine.begin() as conn:
        conn.execute(sa.text("create table jobs (id int primary key)"))
        conn.execute(sa.text("insert into jobs select generate_series(1, 10)"))
    claim = sa.text("select id from jobs order by id limit :n for update skip locked")
    with engine.connect() as first, engine.connect() as second:
        first.begin()
        second.begin()
        claimed_first = first.execute(claim, {"n": 3}).scalars().all()
        claimed_second = second.execute(claim, {"n": 10}).scalars().all()
        assert claimed_first == [1, 2, 3]
        assert claimed_second == list(range(4, 11))
    engine.dispose()


def test_created_databases_are_independent(pg_server: PostgresServer) -> None:
    url_a = pg_server.create_database(f"indep_a_{uuid.uuid4().hex[:8]}")
    url_b = pg_server.create_database(f"indep_b_{uuid.uuid4().hex[:8]}")
    assert url_a.startswith("postgresql+psycopg://postgres@") and url_a != url_b
    a, b = sa.create_engine(url_a), sa.create_engine(url_b)
    with a.begin() as conn:
        conn.execute(sa.text("create table t (x int)"))
        conn.execute(sa.text("insert into t values (1)"))
    with b.connect() as conn:
        assert conn.execute(sa.text("select to_regclass('t')")).scalar_one() is None
    a.dispose()
    b.dispose()


def test_bad_database_name_is_refused(pg_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match="database name"):
        pg_server.create_database("x; drop database postgres")
