"""Schemathesis (its own runner, as an outsider would use it) against the live control plane's
/openapi.json with an admin token: every check and every phase (examples, coverage, fuzzing and the
stateful phase that chains operations by their links). No answer may be a 5xx, every answer must be
declared with its schema, invalid requests refused and valid ones accepted."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from services import ADMIN_TOKEN

from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster

# Examples per operation and phase (about 60 operations, 3 generating phases and the stateful one); the
# coverage phase adds its own boundary cases whatever this is. 25 took 170 s of a 2-core box in the suite.
MAX_EXAMPLES = 15
# Valid requests these operations refuse for what no schema can say: whether a clip is 3-30 s of clean
# speech, whether an archive is a bundle signed by a trusted key, whether the text has something
# speakable in it and the fleet online now serves its language (422 names which, see api/errors.py).
CONTENT_CHECKED = [("POST", "/v1/voices"), ("POST", "/v1/models"), ("POST", "/v1/jobs"), ("POST", "/v1/jobs/batch")]
SETTINGS = "".join(f"""
[[operations]]
include-method = "{method}"
include-path = "{path}"
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "401", "403", "404", "409", "422", "429"]
""" for method, path in CONTENT_CHECKED) + """
# The event stream never ends on its own: each call would run into the request timeout
# (tests/control_plane/test_events.py covers it).
[[operations]]
include-path = "/v1/events"
enabled = false
"""

@pytest.fixture(scope="module")
def live_api(mqtt_broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tag = uuid.uuid4().hex[:6]
    home = tmp_path_factory.mktemp("schema")
    c = Cluster(home / "home", mqtt_url=mqtt_broker.url,
                env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{home}/vf.db", "VOICEFLEET_CONTROL_ID": f"control-{tag}",
                     "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30"})
    try:
        c.start_control_plane()
        c.edge_id = f"edge-{tag}"
        c.start_agent(c.edge_id, role="edge")
        yield c
    finally:
        c.stop()


def test_schemathesis_with_every_check_and_phase_finds_nothing(live_api: Cluster, tmp_path: Path):
    own = httpx.get(f"{live_api.api}/v1/tokens/me", headers=auth_headers(ADMIN_TOKEN), timeout=30).json()["id"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(SETTINGS)
    here = Path(__file__).parent
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "VF_SCHEMA_OWN_TOKEN_ID": own,
           "VF_SCHEMA_DEVICE_ID": live_api.edge_id, "VF_SCHEMA_API": live_api.api, "VF_SCHEMA_TOKEN": ADMIN_TOKEN,
           "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
           f"{live_api.api}/openapi.json", "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", str(MAX_EXAMPLES), "--workers", "1", "--seed", "1", "--request-timeout", "30",
           "-H", f"Authorization: Bearer {ADMIN_TOKEN}"]
    run = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each ran and passed (not skipped)
        assert f"✅ {phase}" in run.stdout, run.stdout[-3000:]
