"""Hooks for the schemathesis run of test_api_schema.py (loaded by SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import os
import time

import httpx
import schemathesis

OWN_TOKEN_ID = os.environ["VF_SCHEMA_OWN_TOKEN_ID"]
ONLY_DEVICE_ID = os.environ["VF_SCHEMA_DEVICE_ID"]
API, TOKEN = os.environ["VF_SCHEMA_API"], os.environ["VF_SCHEMA_TOKEN"]
SETTLED = ("done", "failed", "cancelled")
BENCHING = ("/v1/devices/{device_id}/cordon", "/v1/devices/{device_id}/drain")


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """The requests left out, each sent for an unknown id instead (every other one as generated):
    - revoking the token this run authenticates with (the stateful phase finds its id in GET
      /v1/tokens/me) would answer 401 to everything after it;
    - cordoning or draining the run's one device would leave every job it submits after that
      queued, and GET /v1/jobs/{id}/audio of a queued job waits, by design, for a device to start
      it: the request would time out instead of being answered."""
    if case.method.upper() == "DELETE" and case.path_parameters.get("token_id") == OWN_TOKEN_ID:
        case.path_parameters["token_id"] = "not-this-runs-token"
    if case.path in BENCHING and case.path_parameters.get("device_id") == ONLY_DEVICE_ID:
        case.path_parameters["device_id"] = "not-this-runs-device"
    if case.path == "/v1/jobs/{job_id}/audio":
        _wait_until_settled(str(case.path_parameters.get("job_id")))


def _wait_until_settled(job_id: str, timeout_s: float = 600) -> None:
    """A job's audio streams until the job ends, and the fuzzer queues thousands of jobs on one
    device: a late one's stream would outlast the request timeout. Ask once it has ended (its
    stored WAV, or the 409 of a failed one); the streaming path has tests of its own."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = httpx.get(f"{API}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        if answer.status_code != 200 or answer.json().get("state") in SETTLED:
            return
        time.sleep(0.2)


@schemathesis.serializer("application/gzip")
def _raw_bytes(ctx, value) -> bytes:
    """Bundle uploads: whatever was generated, as bytes (the API must refuse junk with a 4xx)."""
    return value if isinstance(value, bytes) else str(value).encode()
