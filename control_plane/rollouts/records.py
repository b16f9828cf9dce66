"""The rollout tables: reading and changing rollouts and their targets (each change recorded as an
event), the figures devices measured, and the tags a device may carry."""

from __future__ import annotations

import statistics

from sqlmodel import Session, col, select

from control_plane import events
from control_plane.models import Device, DeviceModel, MqttUser, Rollout, RolloutEvent, RolloutTarget
from control_plane.rollouts.states import RolloutError
from voicefleet import protocol as p
from voicefleet.ids import now


def record_model(dm: DeviceModel, active: p.ActiveModel) -> None:
    """What the device says it runs now."""
    if dm.version is not None and active.version != dm.version and (dm.test or {}).get("version") != active.version:
        dm.test = None  # figures belong to the version they were measured on
    dm.model_id, dm.version, dm.slot, dm.previous_version = (active.model_id, active.version, active.slot,
                                                             active.previous_version)


def get_rollout(session: Session, rollout_id: str, *states: str) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise RolloutError("unknown_rollout", f"no rollout {rollout_id!r}")
    if rollout.state not in states:
        raise RolloutError("wrong_state",
                           f"rollout {rollout_id} is {rollout.state}; this needs it {' or '.join(states)}")
    return rollout


def targets_of(session: Session, rollout_id: str, state: str | None = None) -> list[RolloutTarget]:
    session.flush()
    query = select(RolloutTarget).where(RolloutTarget.rollout_id == rollout_id)
    if state is not None:
        query = query.where(RolloutTarget.state == state)
    return list(session.exec(query.order_by(RolloutTarget.phase, RolloutTarget.device_id)).all())


def set_state(session: Session, rollout: Rollout, state: str, reason: str | None, kind: str | None = None) -> None:
    rollout.state, rollout.reason, rollout.updated_at = state, reason, now()
    session.add(rollout)
    add_event(session, rollout, kind or state, detail={"state": state, "reason": reason})
    if state == "halting":  # a gate breached: it stops and rolls back
        events.rollout_halted(session, rollout, reason)


def set_target(session: Session, rollout: Rollout, target: RolloutTarget, state: str, *, error: str | None = None,
               detail: dict | None = None) -> None:
    target.state, target.updated_at = state, now()
    if error is not None:
        target.error = error
    session.add(target)
    add_event(session, rollout, f"device_{state}", target.device_id, detail)


def online_ids(session: Session, device_ids: list[str]) -> set[str]:
    if not device_ids:
        return set()
    session.flush()
    return set(session.exec(select(Device.id).where(col(Device.id).in_(device_ids), Device.status == "online")).all())


def own_figures(dm: DeviceModel) -> dict | None:
    """The test figures the device measured for the version it runs, if it did."""
    return dm.test if dm.test and dm.test.get("version") == dm.version else None


def version_figures(session: Session, model_id: str) -> dict[str, dict[str, float]]:
    """Per version, the median test-synthesis figures its devices measured: a baseline for devices
    that never measured their own."""
    by_version: dict[str, list[dict]] = {}
    for dm in session.exec(select(DeviceModel).where(DeviceModel.model_id == model_id)).all():
        if own_figures(dm):
            by_version.setdefault(dm.version, []).append(dm.test)
    return {v: {k: statistics.median(f[k] for f in tests if isinstance(f.get(k), int | float))
                for k in ("rtf", "first_chunk_s") if any(isinstance(f.get(k), int | float) for f in tests)}
            for v, tests in by_version.items()}


def add_event(session: Session, rollout: Rollout, kind: str, device_id: str | None = None,
              detail: dict | None = None) -> None:
    session.add(RolloutEvent(rollout_id=rollout.id, kind=kind, device_id=device_id, detail=detail))
    events.rollout_changed(session, rollout, kind, device_id)


def trusted_tags(session: Session, device_id: str, reported: list[str]) -> list[str]:
    """An enrolled device's tags are the ones an admin gave it at enrolment (a device must not tag
    itself into another customer's rollout); only a device on an open broker reports its own."""
    login = session.get(MqttUser, device_id)
    if login is not None and login.kind == "device":
        return list(login.tags)
    return list(reported)
