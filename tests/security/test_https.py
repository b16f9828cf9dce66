"""HTTPS is one setting away: a control plane given a certificate serves only TLS, and an agent that
trusts the CA (VOICEFLEET_CA_FILE) enrols over it."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from brokersec import make_pki
from services import ADMIN_TOKEN, wait_for

from edge_agent import enrolment
from edge_agent.config import AgentSettings
from voicefleet.broker import MosquittoBroker, free_port
from voicefleet.credentials import auth_headers
from voicefleet.processes import terminate


def test_control_plane_over_https_and_an_agent_enrolling_through_it(tmp_path: Path, mqtt_broker: MosquittoBroker):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    env = {**os.environ, "VOICEFLEET_HOME": str(tmp_path / "cp"), "VOICEFLEET_MQTT_URL": mqtt_broker.url,
           "VOICEFLEET_HTTP_PORT": str(port), "VOICEFLEET_CONTROL_ID": f"cp-https-{port}",
           "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30",
           "VOICEFLEET_TLS_CERT_FILE": str(pki.cert_file), "VOICEFLEET_TLS_KEY_FILE": str(pki.key_file)}
    with open(tmp_path / "cp.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "voicefleet_cli", "control-plane"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    api = f"https://127.0.0.1:{port}"
    client = httpx.Client(verify=ssl.create_default_context(cafile=pki.ca_file), headers=auth_headers(ADMIN_TOKEN))
    try:
        wait_for(lambda: proc.poll() is not None or _ready(client, api), "the control plane on HTTPS")
        assert proc.poll() is None, (tmp_path / "cp.log").read_text()[-2000:]
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        with pytest.raises(httpx.ConnectError):  # nor does a client that does not trust the CA
            httpx.get(f"{api}/healthz", timeout=2)
        _only_admins_manage_enrolment(client, api)
        token = client.post(f"{api}/v1/enrolment-tokens", json={"device_id": "hub-https"}).json()["token"]

        settings = AgentSettings(home=tmp_path / "agent", device_id="hub-https", api_url=api, enrol_token=token,
                                 ca_file=pki.ca_file)
        login = enrolment.mqtt_login(settings)
        stored = json.loads(settings.credentials_path().read_text())
        assert (login.username, login.password) == ("hub-https", stored["mqtt_password"])
        assert login.ca_file == pki.ca_file
        # From then on the stored login is used; the spent token is never sent again.
        assert enrolment.mqtt_login(settings.model_copy(update={"enrol_token": "vfe_spent"})) == login
        with pytest.raises(enrolment.EnrolmentFailed, match="already used"):
            enrolment.enrol(settings)
    finally:
        client.close()
        terminate(proc, 20)


def _only_admins_manage_enrolment(admin: httpx.Client, api: str) -> None:
    operator = admin.post(f"{api}/v1/tokens", json={"name": "ops", "role": "operator"}).json()["token"]
    for method, path in (("POST", "/v1/enrolment-tokens"), ("GET", "/v1/enrolment-tokens"),
                         ("GET", "/v1/mqtt-users"), ("POST", "/v1/devices/hub-https/revoke")):
        body = {} if method == "POST" else None
        assert admin.request(method, f"{api}{path}", json=body, headers={"Authorization": ""}).status_code == 401
        as_operator = admin.request(method, f"{api}{path}", json=body, headers=auth_headers(operator))
        assert as_operator.status_code == 403, (path, as_operator.text)


def _ready(client: httpx.Client, api: str) -> bool:
    try:
        return client.get(f"{api}/readyz", timeout=2).json().get("ready", False)
    except httpx.HTTPError:
        return False
