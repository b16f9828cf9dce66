"""The audit log: who made each state-changing call, on what, and how it ended (read with GET /v1/audit).

Every POST, PUT, PATCH and DELETE under /v1 is recorded once its answer has been sent, refusals too
(401, 403, 422: a forged or probing call is what an operator looks for). Records are queued and
written by a thread of their own, many to a transaction (a transaction of its own for each call was
a share of every submit's CPU); if a write fails (the database is away) a warning is
logged and the calls stand: the log must never cost a call its answer. Reading the log first
writes what is queued, so a caller sees its own calls.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

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


def write(engine: Engine, entries: list[AuditEntry]) -> None:
    """One transaction for all of them; a failure is logged, never raised."""
    try:
        with Session(engine) as session:
            session.connection().execute(insert(AuditEntry.__table__), [e.model_dump(exclude={"id"}) for e in entries])
            session.commit()
    except SQLAlchemyError as exc:
        first = entries[0]
        log.warning("audit log: %d call(s) not recorded, the first %s %s (%d): %s", len(entries), first.method,
                    first.path, first.status, type(getattr(exc, "orig", None) or exc).__name__)


class AuditWriter:
    """Writes queued records in batches on its own thread (at most BATCH a transaction)."""

    BATCH = 500

    def __init__(self, engine: Engine):
        self.engine = engine
        self._queue: queue.SimpleQueue[AuditEntry | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def add(self, entry: AuditEntry) -> None:
        self._queue.put(entry)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Return once everything queued before this call is written (or its write failed)."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout_s)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            batch, marks, stop = [], [], False
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    marks.append(item)
                else:
                    batch.append(item)
                if stop or len(batch) >= self.BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                write(self.engine, batch)
            for mark in marks:
                mark.set()
            if stop:
                return


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
            services.audit.add(entry_of(scope, status))
