"""An agent whose broker login was revoked says so, with what to do, instead of blaming a missing
broker; and it says it at once (the broker answered), not after the connect timeout."""

from __future__ import annotations

from pathlib import Path

from services import http, wait_for

from voicefleet.broker import MosquittoBroker, free_port
from voicefleet_cli.onebox import Cluster, broker_login_env


def test_agent_with_a_revoked_stored_login_names_the_refusal_and_the_fix(tmp_path: Path):
    with MosquittoBroker(tmp_path / "broker", secured=True) as broker:
        cluster = Cluster(tmp_path / "home", mqtt_url=broker.url, http_port=free_port(),
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
