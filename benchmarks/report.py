"""What every benchmark shares: strict JSON output (no NaN), and the admin token of the control
planes it starts (they inherit it from the environment; the benchmark's clients send ``AUTH``)."""

from __future__ import annotations

import os
import secrets
from typing import Any

ADMIN_TOKEN = os.environ.setdefault("VOICEFLEET_ADMIN_TOKEN", f"vft_{secrets.token_hex(8)}_{secrets.token_urlsafe(24)}")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def finite(x: Any) -> Any:
    """NaN (an empty sample) becomes null, so ``--json`` output is strict JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
