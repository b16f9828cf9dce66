"""Where a client (the CLI, a test, a hub's cloud path) finds its API token. Standard library only.

In order: ``VOICEFLEET_TOKEN``; ``VOICEFLEET_ADMIN_TOKEN`` (the control plane's own bootstrap
token, when the client runs beside it); the ``admin.token`` file that a control plane writes into
its home folder (``VOICEFLEET_HOME``, default ``~/.voicefleet``) on first start.
"""

from __future__ import annotations

import os
from pathlib import Path


def api_token(home: str | Path | None = None, environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    token = env.get("VOICEFLEET_TOKEN") or env.get("VOICEFLEET_ADMIN_TOKEN")
    if token:
        return token.strip()
    folder = Path(home or env.get("VOICEFLEET_HOME") or Path.home() / ".voicefleet")
    try:
        return (folder / "admin.token").read_text().strip() or None
    except OSError:
        return None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
