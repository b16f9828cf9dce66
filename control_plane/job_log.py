"""One log line per job event, written once the transaction that recorded it commits (a rolled-back
event was never true). Each carries ``job_id``, ``device_id``, ``attempt`` and ``event`` as fields,
so with VOICEFLEET_LOG_FORMAT=json a collector can follow a job across replicas and devices
(voicefleet/logs.py adds the replica's id)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import Session

log = logging.getLogger("voicefleet.jobs")
_STAGED = "job_log_lines"


def attach(session: Session) -> Session:
    session.info[_STAGED] = []
    sa_event.listen(session, "after_commit", _write)
    sa_event.listen(session, "after_soft_rollback", _drop)
    return session


def stage(session: Session, rows: list[dict[str, Any]]) -> None:
    """The JobEvent rows this transaction inserts (nothing in a session not attached: a tool's)."""
    staged = session.info.get(_STAGED)
    if staged is not None and log.isEnabledFor(logging.INFO):
        staged.extend(rows)


def _write(session: Session) -> None:
    rows, session.info[_STAGED] = session.info[_STAGED], []
    for row in rows:
        why = {k: v for k, v in (row.get("detail") or {}).items() if k in ("code", "reason") and v}
        where = f" on {row['device_id']}" if row["device_id"] else ""
        because = f": {', '.join(map(str, why.values()))}" if why else ""
        log.info("job %s %s%s%s", row["job_id"], row["kind"], where, because,
                 extra={"job_id": row["job_id"], "device_id": row["device_id"], "attempt": row["attempt"],
                        "event": row["kind"], **why})


def _drop(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:
        session.info[_STAGED] = []
