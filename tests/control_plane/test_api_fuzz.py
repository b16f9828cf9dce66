"""No request makes the control plane answer 500: random bodies and paths get 2xx or 4xx."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from services import ADMIN_TOKEN

from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster

finite = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
job_like = st.fixed_dictionaries({}, optional={
    "text": st.one_of(st.text(max_size=60), st.integers(), st.none()),
    "lang": st.one_of(st.sampled_from(["zh", "en", "yue", "", "ZH"]), st.text(max_size=5), st.integers()),
    "dialect": st.one_of(st.none(), st.sampled_from(["yue", "sichuan", "xx"]), st.text(max_size=8)),
    "voice": st.one_of(st.none(), st.text(max_size=10), st.integers()),
    "instruction": st.one_of(st.none(), st.text(max_size=20)),
    "priority": st.one_of(st.integers(-100, 100), st.text(max_size=3), finite),
})


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/voicefleet.db"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(job_like, json_values), raw=st.binary(max_size=40), path=st.text(max_size=12))
def test_no_request_gets_a_500(cluster: Cluster, body, raw, path):
    with httpx.Client(base_url=cluster.api, timeout=10, headers=auth_headers(ADMIN_TOKEN)) as client:
        for resp in (
            client.post("/v1/jobs", json=body),
            client.post("/v1/jobs", content=raw, headers={"content-type": "application/json"}),
            client.get(f"/v1/jobs/{quote(path, safe='') or 'x'}"),
            client.get("/v1/jobs", params={"state": path, "limit": len(raw) - 5}),
        ):
            assert resp.status_code < 500, (resp.request.url, resp.text)
            if resp.status_code >= 400:
                assert resp.json()["error"]["text"], resp.text
