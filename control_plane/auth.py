"""API tokens, roles, rate limits and signed URLs (docs/security.md).

A token is ``vft_<id>_<secret>``; the database keeps only sha256(secret), so a leaked database
gives no working token. Roles:

- ``admin``: everything, including tokens, device enrolment and revocation;
- ``operator``: runs the fleet: every job and its audio, devices, voices, models and rollouts;
- ``viewer``: reads jobs, devices, voices, models and rollouts; no audio, no changes;
- ``client``: submits jobs, and reads and cancels its own jobs and their audio.

Agents fetch what a job or an update refers to (a voice's prompt clip, a bundle's files) with a
signed URL instead of a token: ``?exp=<unix time>&sig=<hmac>``, valid for one path until ``exp``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from control_plane.models import ApiToken
from voicefleet.protocol import now

log = logging.getLogger(__name__)
PREFIX = "vft"
CACHE_S = 5.0  # a checked token is trusted this long without reading the database (revoke clears it here)
SIGNED_URL_TTL_S = 3600.0


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
    """Creates, checks and revokes API tokens; keeps each token's rate-limit bucket (per process:
    replicas behind a load balancer each allow the rate)."""

    def __init__(self, engine: Engine):
        self.engine = engine
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
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].token_id != token_id}
        return row

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
        role = Role(row.role)
        rate = (row.rate_per_s, row.burst or max(1, int(row.rate_per_s * 2))) if row.rate_per_s else DEFAULT_RATES[role]
        who = Principal(token_id=row.id, subject=row.subject, role=role, rate=rate)
        with self._lock:
            self._cache[key] = (time.monotonic(), who)
        return who

    def throttle(self, who: Principal) -> float:
        """0 if ``who`` may make a request now, else the seconds to wait."""
        if who.rate is None:
            return 0.0
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


# ------------------------------------------------------------------------------ signed URLs


def _mac(secret: bytes, path: str, exp: int) -> str:
    return hmac.new(secret, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()


def signed_query(secret: bytes, path: str, ttl_s: float = SIGNED_URL_TTL_S) -> str:
    """The query string (``exp`` and ``sig``) that lets anyone holding it GET ``path`` until it expires."""
    exp = int(time.time() + ttl_s)
    return urlencode({"exp": exp, "sig": _mac(secret, path, exp)})


def signature_ok(secret: bytes, path: str, exp: str | None, sig: str | None) -> bool:
    # isascii: str.isdigit() also holds for "¹" and other digits int() refuses
    if not exp or not sig or not (exp.isascii() and exp.isdigit()) or int(exp) < time.time():
        return False
    return hmac.compare_digest(_mac(secret, path, int(exp)), sig)


def url_secret(configured: str | None, home: Path) -> bytes:
    """VOICEFLEET_URL_SECRET (replicas must share it), else one kept in ``home/url.secret``."""
    if configured:
        return configured.encode()
    path = home / "url.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


# ----------------------------------------------------------------------------- dependencies

_bearer = HTTPBearer(auto_error=False, description="an API token: Authorization: Bearer vft_<id>_<secret>")


def authenticate(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The caller of this request, after its rate limit; 401 without a valid token, 429 over its rate."""
    tokens: Tokens = request.app.state.services.tokens
    if credentials is None:
        raise HTTPException(401, "send an API token: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    who = tokens.check(credentials.credentials)
    if who is None:
        raise HTTPException(401, "the API token is unknown, malformed or revoked; ask an admin for a new one",
                            headers={"WWW-Authenticate": "Bearer"})
    wait = tokens.throttle(who)
    if wait > 0:
        raise HTTPException(429, f"over this token's rate of {who.rate[0]:g} requests/s; retry later",
                            headers={"Retry-After": str(max(1, round(wait)))})
    request.state.principal = who
    return who


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def allow(*roles: Role):
    """A dependency that lets through admins and the given roles, and answers 403 to the rest."""
    permitted = {Role.admin, *roles}

    def check(who: PrincipalDep) -> Principal:
        if who.role not in permitted:
            names = " or ".join(sorted(permitted))
            raise HTTPException(403, f"this needs the {names} role; this token is {who.role}")
        return who

    return check


def allow_signed_or(*roles: Role):
    """For what agents fetch: a valid signed URL, or a token with one of ``roles``."""
    role_check = allow(*roles)

    def check(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal | None:
        q = request.query_params
        if signature_ok(request.app.state.services.url_secret, request.url.path, q.get("exp"), q.get("sig")):
            return None
        return role_check(authenticate(request, credentials))

    return check


Reader = Depends(allow(Role.operator, Role.viewer))  # read-only views of the fleet
Operator = Depends(allow(Role.operator))
Admin = Depends(allow())
