"""What ``voicefleet up`` mends from the box's own state when it starts again (docs/security.md).

An admin may revoke the admin token that ``up`` keeps in ``VOICEFLEET_HOME/admin.token``, or the
broker logins of ``up``'s own agents. Without repair the box could not start again: every API call
of ``up`` answered 401, an agent logged in with a revoked password, and an agent enrolled again
stayed cordoned, so jobs waited for ever. ``up`` is the owner of these parts on this box, so it
replaces each through a path that does not need what was revoked, and says what it did:

- a revoked admin token in the file: a new one is made straight in the box's database (whoever
  can read that database holds every secret anyway) and written to the file;
- an agent's revoked or unknown login: its stored credentials are deleted, so it enrols again with
  the token ``up`` gives it, and the cordon its revocation left is lifted once it is back.

A token that came from the environment is not ``up``'s to replace: the error names the variable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from voicefleet.files import write_atomic

ADMIN_TOKEN_FILE = "admin.token"  # where a control plane keeps its first admin token (control_plane/tokens.py)
TOKEN_VARIABLES = ("VOICEFLEET_TOKEN", "VOICEFLEET_ADMIN_TOKEN")  # what voicefleet/credentials.py reads first


class Cluster(Protocol):
    """What the repairs need of voicefleet_cli.onebox.Cluster (which imports this module)."""

    api: str
    home: Path
    env: dict[str, str]

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]: ...


class RepairError(RuntimeError):
    """What ``up`` cannot mend itself; the text names the variable, file or command that does."""


def renew_admin_token(home: Path, *, name: str = "one-box admin") -> Path:
    """Make a new admin token in this box's database and write it to ``home/admin.token`` (mode 0600).
    Needs no API token: it is the way back in after the one in the file was revoked."""
    from control_plane.core.config import Settings
    from control_plane.core.db import make_engine, upgrade
    from control_plane.tokens import Role, Tokens

    settings = Settings(home=home)
    url = settings.resolved_database_url()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are the control plane's to say
    upgrade(url)  # a box whose control plane never started has no tables yet
    engine = make_engine(url)
    try:
        _, token = Tokens(engine).create(role=Role.admin, name=name)
    finally:
        engine.dispose()
    path = Path(home) / ADMIN_TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, token + "\n", mode=0o600)
    return path


def admin_token(cluster: Cluster) -> str | None:
    """Make sure ``up``'s API calls carry a working admin token; a line saying what was mended, or None."""
    status, _ = cluster.call("GET", "/v1/tokens/me")
    if status == 200:
        return None
    if status != 401:
        raise RepairError(f"the control plane at {cluster.api} answered {status} to GET /v1/tokens/me; "
                          f"see {cluster.home / 'control-plane.log'}")
    variable = next((v for v in TOKEN_VARIABLES if cluster.env.get(v)), None)
    if variable:
        raise RepairError(f"the API token in {variable} was refused (revoked or unknown): set {variable} to a "
                          f"working admin token, or unset it so that `up` keeps its own in "
                          f"{cluster.home / ADMIN_TOKEN_FILE}")
    path = renew_admin_token(cluster.home, name="one-box admin (the previous one was refused)")
    if cluster.call("GET", "/v1/tokens/me")[0] != 200:
        raise RepairError(f"a new admin token in {path} is refused too; see {cluster.home / 'control-plane.log'}")
    return f"the admin token in {path} was revoked: `up` made a new one there"


def revoked_logins(cluster: Cluster, device_ids: list[str]) -> dict[str, str]:
    """Before the agents start: {device id: why} for each of them whose broker login the control plane
    no longer accepts (revoked, or unknown to this database). Their stored credentials are deleted,
    so that they enrol again with the token ``up`` hands them."""
    status, users = cluster.call("GET", "/v1/mqtt-users")
    if status != 200:
        raise RepairError(f"GET /v1/mqtt-users answered {status}; see {cluster.home / 'control-plane.log'}")
    known = {u["username"]: u for u in users}
    stale: dict[str, str] = {}
    for device_id in device_ids:
        stored = cluster.home / "agents" / device_id / "mqtt-credentials.json"  # edge_agent/config.py
        user = known.get(device_id)
        if user is not None and user.get("revoked_at") is not None:
            stale[device_id] = "its broker login had been revoked"
        elif user is None and stored.exists():
            stale[device_id] = "its stored broker login is unknown to this database"
        else:
            continue
        stored.unlink(missing_ok=True)
    return stale


def lift_revocation_cordons(cluster: Cluster, stale: dict[str, str]) -> list[str]:
    """After the agents are back: uncordon those enrolled again here (their revocation cordoned them),
    and name any other of ``up``'s agents that an operator cordoned. Lines saying what was done."""
    said = []
    for device_id, why in stale.items():
        status, _ = cluster.call("POST", f"/v1/devices/{device_id}/uncordon")
        if status != 200:
            raise RepairError(f"could not uncordon {device_id} ({status}): run `voicefleet --api {cluster.api} "
                              f"uncordon {device_id}`")
        said.append(f"{device_id}: {why}; `up` enrolled it again and lifted the cordon of its revocation")
    return said


def cordoned_notes(cluster: Cluster, device_ids: list[str]) -> list[str]:
    """A line for each of ``up``'s agents that is cordoned (by an operator: ``up`` leaves it so)."""
    status, devices = cluster.call("GET", "/v1/devices")
    if status != 200:
        return []
    return [f"{d['id']} is cordoned and takes no jobs; to give it jobs again: "
            f"voicefleet --api {cluster.api} uncordon {d['id']}"
            for d in devices if d["id"] in device_ids and d.get("cordoned")]
