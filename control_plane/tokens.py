"""API tokens, roles and rate limits (docs/security.md); the HTTP side is control_plane/api/auth.py.

A token is ``vft_<id>_<secret>``; the database keeps only sha256(secret), so a leaked database
gives no working token. Roles:

- ``admin``: everything, including tokens, device enrolment and revocation;
- ``operator``: runs the fleet: every job and its audio, devices, voices, models and rollouts;
- ``viewer``: reads jobs, devices, voices, models and rollouts; no audio, no changes;
- ``client``: submits jobs, and reads and cancels its own jobs and their audio.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from control_plane.models import ApiToken
from control_plane.rate_limits import SharedBuckets
from voicefleet.ids import now

log = logging.getLogger(__name__)
PREFIX = "vft"
CACHE_S = 5.0  # a checked token is trusted this long without reading the database (revoke clears it here)


class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    viewer = "viewer"
    client = "client"


# Requests per second and burst per role, unless the token sets its own (None: unlimited).
DEFAULT_RATES: dict[Role, tuple[float, int] | None] = {
    Role.admin: None,
    Role.operator: (200.0, 400),
    Role.viewer: (50.0, 100),
    Role.client: (50.0, 100),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, the subject it acts for (jobs are owned by subjects), its role."""

    token_id: str
    subject: str
    role: Role
    rate: tuple[float, int] | None

    @property
    def sees_everything(self) -> bool:
        return self.role in (Role.admin, Role.operator, Role.viewer)

    def may_read_audio_of(self, owner: str | None) -> bool:
        return self.role in (Role.admin, Role.operator) or (owner is not None and owner == self.subject)


def principal_of(row: ApiToken) -> Principal:
    """Who a token's holder is (a console session acts as its token: control_plane/sessions.py)."""
    role = Role(row.role)
    rate = (row.rate_per_s, row.burst or max(1, int(row.rate_per_s * 2))) if row.rate_per_s else DEFAULT_RATES[role]
    return Principal(token_id=row.id, subject=row.subject, role=role, rate=rate)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(prefix: str = PREFIX) -> tuple[str, str, str]:
    """(token id, secret, the token as given to its holder: ``<prefix>_<id>_<secret>``). API and
    enrolment tokens share this form; only hash_secret(secret) is ever stored."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return token_id, secret, f"{prefix}_{token_id}_{secret}"


def split_token(token: str, prefix: str = PREFIX) -> tuple[str, str] | None:
    """(token id, secret) of a token of this kind, or None for anything else."""
    kind, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if kind != prefix or len(token_id) != 16 or not secret:
        return None
    return token_id, secret


class TokenBucket:
    """``rate`` requests per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> float:
        """0 if the request may go now, else the seconds until it could."""
        t = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (t - self.at) * self.rate)
        self.at = t
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Tokens:
    """Creates, checks and revokes API tokens; keeps each token's rate-limit bucket: in Redis where
    one is configured, shared by every replica (control_plane/rate_limits.py), else in this process.
    A revocation reaches the other replicas' caches through ``on_revoke`` (control_plane/relay.py)."""

    def __init__(self, engine: Engine, shared: SharedBuckets | None = None):
        self.engine = engine
        self.shared = shared
        self.on_revoke: Callable[[str], None] | None = None
        self._cache: dict[str, tuple[float, Principal]] = {}  # hash of the whole token -> (checked at, who)
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def create(self, *, role: Role, name: str, subject: str | None = None, rate_per_s: float | None = None,
               burst: int | None = None, token: str | None = None) -> tuple[ApiToken, str]:
        """A new token; its plain form is returned once and never stored. ``token`` adopts a given
        plain token (the bootstrap admin token from the environment)."""
        if token is None:
            token_id, secret, token = new_token()
        else:
            token_id, secret = split_token(token) or (None, None)
            if token_id is None:
                raise ValueError(f"a token must look like {PREFIX}_<16 hex>_<secret>")
        row = ApiToken(id=token_id, name=name, role=role, subject=subject or token_id,
                       secret_hash=hash_secret(secret), rate_per_s=rate_per_s, burst=burst)
        with Session(self.engine) as session:
            if session.get(ApiToken, token_id) is None:  # an adopted token keeps its row (and a revocation)
                session.add(row)
                session.commit()
            row = session.get(ApiToken, token_id)
        return row, token

    def revoke(self, token_id: str) -> ApiToken | None:
        with Session(self.engine) as session:
            row = session.get(ApiToken, token_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = now()
                session.add(row)
                session.commit()
                session.refresh(row)
        self.forget(token_id)
        if self.on_revoke is not None:
            self.on_revoke(token_id)
        return row

    def forget(self, token_id: str) -> None:
        """Drop a revoked token from the cache: its next request reads the database and is refused."""
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].token_id != token_id}

    def check(self, token: str) -> Principal | None:
        key = hash_secret(token)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        parts = split_token(token)
        if parts is None:
            return None
        with Session(self.engine) as session:
            row = session.get(ApiToken, parts[0])
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.secret_hash,
                                                                               hash_secret(parts[1])):
            return None
        who = principal_of(row)
        with self._lock:
            self._cache[key] = (time.monotonic(), who)
        return who

    def throttle(self, who: Principal) -> float:
        """0 if ``who`` may make a request now, else the seconds to wait."""
        if who.rate is None:
            return 0.0
        if self.shared is not None and (wait := self.shared.take(who.token_id, *who.rate)) is not None:
            return wait
        with self._lock:
            bucket = self._buckets.get(who.token_id)
            if bucket is None:
                bucket = self._buckets[who.token_id] = TokenBucket(*who.rate)
            return bucket.take()


def bootstrap_admin(tokens: Tokens, configured: str | None, home: Path) -> str:
    """The admin token this control plane starts with: VOICEFLEET_ADMIN_TOKEN, else the one in
    ``home/admin.token``, else a new one written there (mode 0600) for the CLI on this box."""
    path = home / "admin.token"
    token = configured or (path.read_text().strip() if path.exists() else None)
    if token is None:
        _, _, token = new_token()
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(token + "\n")
        log.info("created the first admin token in %s", path)
    tokens.create(role=Role.admin, name="bootstrap admin", token=token)
    return token
