"""An agent whose broker login was revoked says so, with what to do, instead of blaming a missing
broker; and it says it at once (the broker answered), not after the connect timeout."""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as paho
from services import http, wait_for
from sqlmodel import Session

from control_plane import enrolment
from control_plane.broker_auth import BrokerFiles
from control_plane.core.db import make_engine
from voicefleet import protocol as p
from voicefleet.broker import MosquittoBroker
from voicefleet.settings import mqtt_host_port
from voicefleet_cli.onebox import Cluster, broker_login_env


def test_agent_with_a_revoked_stored_login_names_the_refusal_and_the_fix(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", secured=True) as broker:
        cluster = Cluster(tmp_path / "home", mqtt_url=broker.url,
                          env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{tmp_path}/cp.db"})
        try:
            cluster.start_control_plane(**broker_login_env(broker))
            cluster.start_agent("hub-r", **cluster.enrol_env("hub-r"))
            assert http.post(f"{cluster.api}/v1/devices/hub-r/revoke").status_code == 200
            cluster.agents.pop("hub-r").terminate()
            wait_for(lambda: cluster.device_status("hub-r") == "offline", "the revoked agent to go")

            again = cluster.start_agent("hub-r", wait=False)  # it logs in with its stored (revoked) login
            assert again.wait(60) == 2  # the agent command's "a setting to fix" exit, not a traceback's 1
            log = (cluster.home / "agent-hub-r.log").read_text()
            stored = cluster.home / "agents" / "hub-r" / "mqtt-credentials.json"
            assert "the broker refused our login (Not authorized) as 'hub-r'" in log, log[-3000:]
            assert f"the login stored in {stored} was revoked" in log and "VOICEFLEET_ENROL_TOKEN" in log
            assert "no MQTT broker answered" not in log and "Traceback" not in log, log[-3000:]
        finally:
            cluster.stop()


def test_what_a_revoked_device_said_before_the_broker_dropped_it_does_not_bring_it_back(tmp_path: Path):
    """The broker drops a revoked login a moment after the control plane marks it offline; a state or
    telemetry it sent in between (replayed here, in order, by the control plane's own login) is
    ignored, so the device stays offline instead of waiting out the heartbeat timeout."""
    with MosquittoBroker(tmp_path / "broker", secured=True) as broker:
        cluster = Cluster(tmp_path / "home", mqtt_url=broker.url,
                          env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{tmp_path}/cp.db"})
        login = broker_login_env(broker)
        try:
            cluster.start_control_plane(**login)
            cluster.start_agent("hub-r", **cluster.enrol_env("hub-r"))
            assert http.post(f"{cluster.api}/v1/devices/hub-r/revoke").status_code == 200
            cluster.agents.pop("hub-r").terminate()
            wait_for(lambda: cluster.device_status("hub-r") == "offline", "the revoked device to be offline", 10)

            late = [(p.device_topic("hub-r", "state"), p.DeviceState(device_id="hub-r", status="online")),
                    (p.device_topic("hub-r", "telemetry"), p.Telemetry(device_id="hub-r")),
                    # an unenrolled id after them: once it shows, the two before it were handled
                    (p.device_topic("probe", "state"), p.DeviceState(device_id="probe", status="online"))]
            _publish_in_order(cluster, broker, late)
            wait_for(lambda: cluster.device_status("probe") == "online", "the probe behind the late messages")
            assert cluster.device_status("hub-r") == "offline"
        finally:
            cluster.stop()


def _publish_in_order(cluster: Cluster, broker: MosquittoBroker, messages: list) -> None:
    """Publish as a second control-plane login (the broker takes a login's name as its client id, so
    the running control plane's own login would push it off)."""
    engine = make_engine(f"sqlite:///{cluster.home.parent}/cp.db")
    with Session(engine) as session:
        enrolment.ensure_control_user(session, username="replay", password="replay-secret")
    BrokerFiles(broker.workdir, broker.pid_path).sync(engine)
    engine.dispose()
    # the broker reloads its password file on a signal: until it has, the login is refused
    client = wait_for(lambda: _login(broker, "replay", "replay-secret"), "the broker to take the replay login")
    client.loop_start()
    try:
        for topic, message in messages:
            client.publish(topic, p.encode(message), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def _login(broker: MosquittoBroker, username: str, password: str) -> paho.Client | None:
    """A client whose login the broker accepted, or None when it refused it."""
    answers: list[bool] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=username)
    client.username_pw_set(username, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(not reason.is_failure)
    client.connect(*mqtt_host_port(broker.url))
    while not answers and client.loop(timeout=1.0) == paho.MQTT_ERR_SUCCESS:
        pass
    if answers and answers[0]:
        return client
    client.disconnect()
    return None
