"""End to end on a secured broker over TLS: a control plane that maintains the broker's logins, an
agent that enrols with a one-time token and serves a job, and a revocation that cuts it off."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from brokersec import connect, make_pki
from services import http, wait_for, wait_job
from sqlalchemy import create_engine, text

from voicefleet.broker import BrokerTls, MosquittoBroker
from voicefleet_cli.onebox import Cluster, broker_login_env


def test_enrolled_agent_serves_jobs_over_tls_until_revoked(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    with MosquittoBroker(tmp_path / "broker", secured=True, tls=BrokerTls(pki.cert_file, pki.key_file)) as broker:
        assert broker.url.startswith("mqtts://")
        _plain_and_anonymous_clients_are_refused(broker, pki.ca_file)
        cluster = Cluster(tmp_path / "home", mqtt_url=broker.url,
                          env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{tmp_path}/cp.db",
                               "VOICEFLEET_CA_FILE": str(pki.ca_file), "VOICEFLEET_TELEMETRY_INTERVAL_S": "0.5"})
        try:
            cluster.start_control_plane(**broker_login_env(broker))
            _serve_and_revoke(cluster, broker)
        finally:
            cluster.stop()


def _plain_and_anonymous_clients_are_refused(broker: MosquittoBroker, ca_file: Path) -> None:
    plain = connect(broker.url.replace("mqtts://", "mqtt://"), None, None, client_id="plain", wait=False)
    assert plain.wait("connect", timeout_s=2.0) is None, "a plain-TCP client got a CONNACK from the TLS port"
    plain.stop()
    untrusted = connect(broker.url, None, None, client_id="untrusted", wait=False)  # system CAs only
    assert untrusted.wait("connect", timeout_s=2.0) is None, "TLS accepted a certificate from an unknown CA"
    untrusted.stop()
    anonymous = connect(broker.url, None, None, client_id="anon", ca_file=ca_file, wait=False)
    assert anonymous.wait("connect") == "Not authorized"
    anonymous.stop()


def _serve_and_revoke(cluster: Cluster, broker: MosquittoBroker) -> None:
    api = cluster.api
    made = http.post(f"{api}/v1/enrolment-tokens", json={"device_id": "hub-tls", "tags": ["site:lab"]})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert http.post(f"{api}/v1/enrol", json={"token": token, "device_id": "hub-other"}).status_code == 409
    cluster.start_agent("hub-tls", VOICEFLEET_ENROL_TOKEN=token, VOICEFLEET_API_URL=api)
    creds = cluster.home / "agents" / "hub-tls" / "mqtt-credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    again = http.post(f"{api}/v1/enrol", json={"token": token, "device_id": "hub-tls"})
    assert again.status_code == 401 and "already used" in again.json()["error"]["text"]
    assert http.post(f"{api}/v1/enrol", json={"token": token, "device_id": "hub-tls"},
                     headers={"Authorization": ""}).status_code == 401  # no API token needed, the token still fails

    # A restarted agent logs in with its stored credentials (the token is spent).
    cluster.agents.pop("hub-tls").terminate()
    wait_for(lambda: cluster.device_status("hub-tls") == "offline", "the agent to go")
    cluster.start_agent("hub-tls", VOICEFLEET_TAGS="customer:acme")  # a tag it gives itself counts for nothing
    wait_for(lambda: _tags(cluster, "hub-tls") == ["site:lab"], "the enrolled tags on the device")
    assert http.get(f"{api}/v1/devices/hub-tls").json()["tags"] == ["site:lab"]
    job = http.post(f"{api}/v1/jobs", json={"text": "你好"}).json()
    done = wait_job(api, job["id"])
    assert (done["state"], done["device_id"]) == ("done", "hub-tls"), done

    revoked = http.post(f"{api}/v1/devices/hub-tls/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None, revoked.text
    assert cluster.device_status("hub-tls") == "offline" or wait_for(
        lambda: cluster.device_status("hub-tls") == "offline", "the revoked device to be offline", 5)
    # It keeps trying (telemetry every 0.5 s) but is never heard from again, and cannot log back in.
    time.sleep(2.0)
    assert cluster.agents["hub-tls"].poll() is None and cluster.device_status("hub-tls") == "offline"
    log = broker.log_path.read_text()
    assert "Client hub-tls disconnected" in log and "disconnected, not authorised" in log, log[-2000:]
    users = {u["username"]: u for u in http.get(f"{api}/v1/mqtt-users").json()}
    assert users["hub-tls"]["revoked_at"] is not None and users["control"]["kind"] == "control"


def test_one_box_secures_its_broker_and_enrols_its_agents(tmp_path: Path):
    """What ``voicefleet up`` does: its own secured broker, agents enrolled through the API, and a
    control plane that comes back with a new password of its own."""
    with MosquittoBroker(tmp_path / "broker", secured=True) as broker:
        cluster = Cluster(tmp_path / "home", mqtt_url=broker.url,
                          env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{tmp_path}/cp.db"})
        try:
            cluster.start_control_plane(**broker_login_env(broker))
            for device_id, role in (("edge-1", "edge"), ("cloud-1", "cloud")):
                cluster.start_agent(device_id, role=role, **cluster.enrol_env(device_id))
            cluster.control.terminate()
            cluster.control.wait(30)
            cluster.start_control_plane(**broker_login_env(broker))
            job = http.post(f"{cluster.api}/v1/jobs", json={"text": "你好"}).json()
            assert wait_job(cluster.api, job["id"])["state"] == "done"
            users = http.get(f"{cluster.api}/v1/mqtt-users").json()
            assert sorted((u["username"], u["kind"]) for u in users) == [
                ("cloud-1", "device"), ("control", "control"), ("edge-1", "device")]
        finally:
            cluster.stop()


def _tags(cluster: Cluster, device_id: str) -> list[str] | None:
    """The tags rollouts select this device by (control_plane/rollouts.py keeps them per device)."""
    engine = create_engine(cluster.env["VOICEFLEET_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            row = conn.execute(text("select tags from devicemodel where device_id = :d"), {"d": device_id}).first()
    finally:
        engine.dispose()
    return json.loads(row[0]) if row and isinstance(row[0], str) else (row[0] if row else None)
