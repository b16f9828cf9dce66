"""Hooks for the schemathesis run of test_api_schema.py (loaded by SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import os

import schemathesis

OWN_TOKEN_ID = os.environ["VF_SCHEMA_OWN_TOKEN_ID"]


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """The one request left out: revoking the token this run authenticates with (the stateful phase
    finds its id in GET /v1/tokens/me) would answer 401 to everything after it. It is sent for an
    unknown id instead; every other revocation is sent as generated."""
    if case.method.upper() == "DELETE" and case.path_parameters.get("token_id") == OWN_TOKEN_ID:
        case.path_parameters["token_id"] = "not-this-runs-token"


@schemathesis.serializer("application/gzip")
def _raw_bytes(ctx, value) -> bytes:
    """Bundle uploads: whatever was generated, as bytes (the API must refuse junk with a 4xx)."""
    return value if isinstance(value, bytes) else str(value).encode()
