"""The audit log: who made each state-changing call, on what, and how it ended (read with GET /v1/audit).

Every POST, PUT, PATCH and DELETE under /v1 is recorded once its answer has been sent, refusals too
(401, 403, 422: a forged or probing call is what an operator looks for). The record is one insert
made after the answer, off the event loop; if it fails (the database is away) a warning is logged
and the call stands: the log must never cost a call its answer.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from control_plane.models import AuditEntry
from control_plane.models.console import MAX_AUDIT_PATH
from control_plane.tokens import Principal

log = logging.getLogger(__name__)
RECORDED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNRECORDED = frozenset({("POST", "/v1/pronounce")})  # reads text and answers its readings: changes nothing
MAX_TARGET_CHARS = 200  # per path parameter
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # PostgreSQL refuses NUL in text; none of them reads well in a log


def recorded(method: str, path: str) -> bool:
    return method in RECORDED_METHODS and path.startswith("/v1/") and (method, path) not in UNRECORDED


def _clean(text: str, limit: int) -> str:
    return _CONTROL.sub(lambda m: f"%{ord(m[0]):02X}", text)[:limit]


def entry_of(scope: dict[str, Any], status: int) -> AuditEntry:
    """The record of the call ``scope`` describes, once it has been answered with ``status``."""
    who: Principal | None = scope.get("state", {}).get("principal")
    route = scope.get("route")
    method = scope["method"]
    matched = route is not None and method in (getattr(route, "methods", None) or ())  # not a 405
    return AuditEntry(
        token_id=who and who.token_id, subject=who and who.subject, role=who and str(who.role), method=method,
        path=_clean(scope["path"], MAX_AUDIT_PATH), action=route.name[:100] if matched else None,
        target={k: _clean(str(v), MAX_TARGET_CHARS) for k, v in scope.get("path_params", {}).items()} if matched
        else {}, status=status)


def write(engine: Engine, entry: AuditEntry) -> None:
    """One insert; a failure is logged, never raised."""
    try:
        with Session(engine) as session:
            session.add(entry)
            session.commit()
    except SQLAlchemyError as exc:
        log.warning("audit log: %s %s (%d) not recorded: %s", entry.method, entry.path, entry.status,
                    type(getattr(exc, "orig", None) or exc).__name__)


def entries(session: Session, *, limit: int, before_id: int | None = None, subject: str | None = None,
            path_prefix: str | None = None) -> list[AuditEntry]:
    """Newest first; ``before_id`` pages on from the last id of the previous page."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if before_id is not None:
        query = query.where(col(AuditEntry.id) < before_id)
    if subject is not None:
        query = query.where(AuditEntry.subject == subject)
    if path_prefix is not None:
        query = query.where(col(AuditEntry.path).startswith(path_prefix, autoescape=True))
    return list(session.exec(query))


class AuditTrail:
    """ASGI middleware recording each state-changing call after its answer (plain ASGI: it sees the
    status as sent, and the caller the auth dependency found, in ``scope["state"]``)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not recorded(scope["method"], scope["path"]):
            return await self.app(scope, receive, send)
        status = 500  # unless an answer starts

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            await self._record(scope, status)
            raise
        await self._record(scope, status)

    @staticmethod
    async def _record(scope, status: int) -> None:
        services = getattr(scope["app"].state, "services", None)
        if services is not None:
            await run_in_threadpool(write, services.engine, entry_of(scope, status))
