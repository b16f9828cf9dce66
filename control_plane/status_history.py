"""A device's status history: the dispatcher records a row whenever it announces a device whose
status (online / draining / offline) or cordon changed since its last row, in the same transaction
as the change. Rows past ``KEEP_S`` are pruned every ``PRUNE_EVERY`` inserts (an indexed delete)."""

from __future__ import annotations

from itertools import count

from sqlalchemy import delete
from sqlmodel import Session, col, select

from control_plane.models import Device, DeviceStatusChange, StatusChangePublic
from voicefleet.ids import now

KEEP_S = 30 * 24 * 3600.0
PRUNE_EVERY = 200
MAX_REASON = 200

_inserts = count()  # process-wide: only how often pruning runs depends on it


def record(session: Session, dev: Device, why: str = "") -> DeviceStatusChange | None:
    """A row for ``dev`` if its status or cordon differs from its last row (a gate change alone,
    such as throttling, is no status change). A device's first row records what it is then."""
    last = session.exec(select(DeviceStatusChange).where(DeviceStatusChange.device_id == dev.id)
                        .order_by(col(DeviceStatusChange.at).desc(), col(DeviceStatusChange.id).desc())
                        .limit(1)).first()
    if last is not None and last.status == dev.status and last.cordoned == dev.cordoned:
        return None
    if last is None or last.status != dev.status:
        kind = dev.status
    else:
        kind = "cordoned" if dev.cordoned else "uncordoned"
    at = max(now(), last.at if last is not None else 0.0)  # keep the order if the clock steps back
    row = DeviceStatusChange(device_id=dev.id, at=at, kind=kind, status=dev.status, cordoned=dev.cordoned,
                             reason=(why or _known_reason(kind))[:MAX_REASON])
    session.add(row)
    if next(_inserts) % PRUNE_EVERY == 0:  # the first insert after a start prunes too
        session.exec(delete(DeviceStatusChange).where(col(DeviceStatusChange.at) < at - KEEP_S))
    return row


def _known_reason(kind: str) -> str:
    return {"cordoned": "cordoned by an operator", "uncordoned": "uncordoned by an operator"}.get(kind, "")


def changes(session: Session, device_id: str, *, limit: int) -> list[StatusChangePublic]:
    """Newest first; each offline change with when the device came back and how long it was away."""
    rows = session.exec(select(DeviceStatusChange).where(DeviceStatusChange.device_id == device_id)
                        .order_by(col(DeviceStatusChange.at).desc(), col(DeviceStatusChange.id).desc())
                        .limit(limit)).all()
    out, back_at = [], None  # back_at: the oldest online/draining change newer than this row
    for r in rows:
        item = StatusChangePublic.model_validate(r)
        if r.status == "offline" and r.kind == "offline" and back_at is not None:
            item.back_at, item.duration_s = back_at, back_at - r.at
        if r.status != "offline":
            back_at = r.at
        elif r.kind == "offline":
            back_at = None  # an older offline spell ended no later than this one began
        out.append(item)
    return out
