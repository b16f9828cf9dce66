"""What every benchmark shares for its output: strict JSON (no NaN)."""

from __future__ import annotations

from typing import Any


def finite(x: Any) -> Any:
    """NaN (an empty sample) becomes null, so ``--json`` output is strict JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
