"""Console sign-in sessions: an API token exchanged for an HttpOnly cookie (the HTTP side:
control_plane/api/routes/session.py and control_plane/api/auth.py).

The cookie holds a random secret; the database keeps only its sha256, as for tokens. A browser sends
the cookie on its own, so a change made with it must also carry the session's CSRF token (which only
the console's own page can read, from GET /v1/session) and must not come from another origin.
Each cookie request reads its session and its token from the database: signing out or revoking the
token ends the session at once, on every replica (tokens' 5 s cache does not apply to sessions).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from control_plane.models import ApiToken, ConsoleSession
from control_plane.tokens import Principal, hash_secret, principal_of
from voicefleet.errors import CodedError
from voicefleet.ids import now

COOKIE = "vf_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # they change nothing: no CSRF token needed
MAX_SECRET_CHARS = 100  # ours are 43; a longer cookie is not one of ours and is not looked up


class CsrfRefused(CodedError):
    """A change that rode on the session cookie without proof that the console's own page made it."""

    def __init__(self, text: str):
        super().__init__("csrf", text)


def open_session(engine: Engine, who: Principal, ttl_s: float) -> tuple[ConsoleSession, str]:
    """A new session for ``who``'s token: (its row, the cookie's secret, given once and never stored)."""
    secret = secrets.token_urlsafe(32)
    row = ConsoleSession(id=hash_secret(secret), token_id=who.token_id, csrf=secrets.token_urlsafe(32),
                         expires_at=now() + ttl_s)
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return row, secret


def find_session(engine: Engine, secret: str) -> tuple[ConsoleSession, Principal] | None:
    """The live session of a cookie's secret and who it acts for; None once it is signed out, expired
    or its token revoked (or for a secret that was never one)."""
    if not secret or len(secret) > MAX_SECRET_CHARS:
        return None
    query = (select(ConsoleSession, ApiToken).join(ApiToken, ApiToken.id == ConsoleSession.token_id)
             .where(ConsoleSession.id == hash_secret(secret)))
    with Session(engine) as session:
        found = session.exec(query).first()
    if found is None:
        return None
    row, token = found
    if row.revoked_at is not None or row.expires_at <= now() or token.revoked_at is not None:
        return None
    return row, principal_of(token)


def close_session(engine: Engine, session_id: str) -> None:
    """Sign out: the session's cookie stops working at once."""
    with Session(engine) as session:
        session.execute(update(ConsoleSession).where(ConsoleSession.id == session_id,
                                                  ConsoleSession.revoked_at.is_(None)).values(revoked_at=now()))
        session.commit()


def check_origin(headers: Mapping[str, str]) -> None:
    """Refuse a request a page of another site made: its Origin names another host than the one asked."""
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
        raise CsrfRefused(f"this request came from another site (Origin {origin[:100]}); the console's "
                          "changes must come from a page this control plane served")


def check_csrf(headers: Mapping[str, str], csrf: str) -> None:
    """A change made with the session cookie: from this site, and with the session's CSRF token."""
    check_origin(headers)
    sent = headers.get(CSRF_HEADER.lower(), "")
    if not hmac.compare_digest(sent.encode(), csrf.encode()):
        raise CsrfRefused(f"a change made with the session cookie needs the {CSRF_HEADER} header: send the "
                          "csrf value that GET /v1/session answers")
