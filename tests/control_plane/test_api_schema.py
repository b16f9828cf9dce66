"""Schemathesis against the live control plane's /openapi.json, with an admin token: whatever it
generates from the schema (valid and invalid), no answer is a 5xx and every documented answer
matches its schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance
from services import ADMIN_TOKEN

from voicefleet.broker import MosquittoBroker, free_port
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster

EXAMPLES_PER_OPERATION = 30


@schemathesis.serializer("application/gzip", "application/octet-stream")
def _raw_bytes(ctx, value) -> bytes:
    """Uploads of archives: whatever was generated, as bytes (the API must refuse junk with a 4xx)."""
    return value if isinstance(value, bytes) else str(value).encode()

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def live_api(mqtt_broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tag = uuid.uuid4().hex[:6]
    home = tmp_path_factory.mktemp("schema")
    c = Cluster(home / "home", mqtt_url=mqtt_broker.url, http_port=free_port(),
                env={"VOICEFLEET_DATABASE_URL": f"sqlite:///{home}/vf.db", "VOICEFLEET_CONTROL_ID": f"control-{tag}",
                     "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30"})
    try:
        c.start_control_plane()
        c.start_agent(f"edge-{tag}", role="edge")
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def api_schema(live_api: Cluster):
    schema = schemathesis.openapi.from_url(f"{live_api.api}/openapi.json", headers=auth_headers(ADMIN_TOKEN))
    return schema


def test_no_5xx_and_every_answer_matches_the_schema(api_schema, live_api: Cluster):
    """One Hypothesis run per operation (schemathesis' own pytest plugin does not load on our pytest)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(base_url=live_api.api, headers=auth_headers(ADMIN_TOKEN), checks=CHECKS,
                                   timeout=30)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 (every operation's finding, not only the first)
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
