"""The fleet as the control plane sees it, and the operator's cordon / drain controls."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator
from sqlmodel import select

from control_plane import jobs, status_history, telemetry_history
from control_plane.api.auth import Operator, Reader
from control_plane.api.deps import ServicesDep, SessionDep
from control_plane.api.errors import DISPATCHER_ANSWERS, declare
from control_plane.dispatch import Send, SteerDevice
from control_plane.models import Device, DeviceModel, DevicePublic, DeviceRecord, StatusChangePublic, TelemetryPoint
from voicefleet.ids import new_id, now
from voicefleet.protocol import ReminderCommand
from voicefleet.text.dialects import lookup

router = APIRouter(prefix="/v1/devices", tags=["devices"])
_STEER_ANSWERS = declare(404, *DISPATCHER_ANSWERS)


def _public(dev: Device, inflight: dict[str, int], services, dm: DeviceModel | None = None) -> DevicePublic:
    """The stored device plus what only the scheduler knows (may it take jobs, its estimates) and
    what rollouts know (the model it runs, its tags)."""
    seen = services.dispatcher.snapshot.get(dev.id)
    gate = seen.gate if seen is not None else dev.status
    extra = {"inflight": inflight.get(dev.id, 0), "eligible": seen is not None and seen.eligible, "gate": gate}
    if seen is not None:
        extra |= {"rtf": seen.rtf, "rtt_s": seen.rtt_s}
    if dev.engines:  # each engine with the RTF the scheduler expects of it there
        extra["engines"] = [o | {"rtf": seen.engine_rtf.get(o["engine"]["name"]) if seen else None}
                            for o in dev.engines]
    if dm is not None:
        extra["tags"] = dm.tags or []
        if dm.model_id:
            extra["model"] = {"model_id": dm.model_id, "version": dm.version, "slot": dm.slot,
                              "previous_version": dm.previous_version, "pinned_version": dm.pinned_version}
    return DevicePublic.model_validate(dev, update=extra)


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:+/=-]{0,99}$"  # roles, tags, engine names, versions
Status = Literal["online", "draining", "offline", "cordoned", "unhealthy"]


@router.get("", response_model=list[DevicePublic], dependencies=[Reader])
def list_devices(session: SessionDep, services: ServicesDep,
                 role: str | None = Query(None, pattern=_NAME, description="edge, cloud, hub, ..."),
                 status: Annotated[Status | None, Query(description="unhealthy: online, uncordoned, yet gated")] = None,
                 tag: str | None = Query(None, pattern=_NAME, description="a rollout tag, e.g. site:lab"),
                 engine: str | None = Query(None, pattern=_NAME, description="offers this engine"),
                 version: str | None = Query(None, pattern=_NAME, description="runs this model or agent version"),
                 dialect: str | None = Query(None, max_length=64, description="an engine offers it (code or name)"),
                 q: str | None = Query(None, max_length=100, description="in its id or a tag (case-insensitive)"),
                 ) -> list[DevicePublic]:
    """The fleet, filtered: every filter given must match (an unknown value matches nothing)."""
    inflight = jobs.inflight_by_device(session)
    models = {dm.device_id: dm for dm in session.exec(select(DeviceModel)).all()}
    found = [_public(d, inflight, services, models.get(d.id))
             for d in session.exec(select(Device).order_by(Device.id)).all()]
    dialect = (lookup(dialect).code if lookup(dialect) else dialect) if dialect else None
    checks = [(role, lambda d: d.role == role), (status, lambda d: _has_status(d, status)),
              (tag, lambda d: tag in d.tags), (engine, lambda d: engine in _offered(d, "name")),
              (version, lambda d: version in (d.agent_version, (d.model or {}).get("version"))),
              (dialect, lambda d: dialect in _offered(d, "dialects")),
              (q, lambda d: q.lower() in d.id.lower() or any(q.lower() in t.lower() for t in d.tags))]
    wanted = [check for value, check in checks if value]
    return [d for d in found if all(check(d) for check in wanted)]


def _has_status(dev: DevicePublic, status: str) -> bool:
    if status == "cordoned":
        return dev.cordoned
    if status == "unhealthy":
        return dev.status == "online" and not dev.cordoned and dev.gate is not None
    return dev.status == status


def _offered(dev: DevicePublic, what: str) -> set[str]:
    """Its engines' names, or every dialect one of them speaks."""
    offers = dev.engines or []
    if what == "name":
        return {o["engine"]["name"] for o in offers} | ({dev.engine["name"]} if dev.engine else set())
    return {d for o in offers for d in o.get("capabilities", {}).get("dialects", [])}


@router.get("/{device_id}", response_model=DevicePublic, dependencies=[Reader], responses=declare(404))
def get_device(device_id: str, session: SessionDep, services: ServicesDep) -> DevicePublic:
    dev = session.get(Device, device_id)
    if dev is None:
        raise HTTPException(404, f"no device {device_id!r}")
    return _public(dev, jobs.inflight_by_device(session), services, session.get(DeviceModel, device_id))


@router.get("/{device_id}/history", dependencies=[Reader])
def history(device_id: str, session: SessionDep, limit: int = Query(1000, ge=1, le=10_000),
            after_seq: int = Query(-1, ge=-1, le=2**62)) -> list[dict]:
    """What the device did on its own (local phrases, reminders, offline telemetry), in its order."""
    rows = session.exec(select(DeviceRecord).where(DeviceRecord.device_id == device_id, DeviceRecord.seq > after_seq)
                        .order_by(DeviceRecord.seq).limit(limit)).all()
    return [{"id": r.id, "seq": r.seq, "record": r.record, "ts": r.ts, "body": r.body, "received_at": r.received_at}
            for r in rows]


@router.get("/{device_id}/telemetry", response_model=list[TelemetryPoint], dependencies=[Reader],
            responses=declare(404))
def telemetry(device_id: str, session: SessionDep,
              window_s: int = Query(3600, ge=1, le=int(telemetry_history.KEEP_S))) -> list[TelemetryPoint]:
    """The device's telemetry over the last ``window_s`` seconds, oldest first: a sample at most every
    10 s, kept for a day."""
    if session.get(Device, device_id) is None:
        raise HTTPException(404, f"no device {device_id!r}")
    return telemetry_history.series(session, device_id, since=now() - window_s)


@router.get("/{device_id}/status-history", response_model=list[StatusChangePublic], dependencies=[Reader],
            responses=declare(404))
def status_changes(device_id: str, session: SessionDep,
                   limit: int = Query(200, ge=1, le=1000)) -> list[StatusChangePublic]:
    """When the device went offline, came back, drained or was cordoned, and why; newest first, kept
    30 days. An offline change says how long the device was away (null while it still is)."""
    if session.get(Device, device_id) is None:
        raise HTTPException(404, f"no device {device_id!r}")
    return status_history.changes(session, device_id, limit=limit)


class ReminderCreate(BaseModel):
    """A hub reminder: ``text`` and exactly one of ``at`` (unix time), ``every_s``, ``time`` ("HH:MM")."""

    # The schema says "exactly one" too: one branch per schedule, each matching only when it is given.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": [k], "properties": {k: {"not": {"type": "null"}}}} for k in ("at", "every_s", "time")]})
    text: str = Field(min_length=1, max_length=500)
    at: StrictFloat | None = None  # strict: false is not the epoch
    every_s: StrictFloat | None = Field(default=None, gt=0)
    time: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")

    @model_validator(mode="after")
    def _one_schedule(self) -> ReminderCreate:
        if sum(v is not None for v in (self.at, self.every_s, self.time)) != 1:
            raise ValueError("give exactly one of at (unix time), every_s (seconds) or time (\"HH:MM\")")
        return self


@router.post("/{device_id}/reminders", status_code=202, dependencies=[Operator],
             responses=declare(404, *DISPATCHER_ANSWERS))
async def add_reminder(device_id: str, body: ReminderCreate, services: ServicesDep) -> dict:
    """Send a reminder to a hub; it arrives when the hub is (back) online and fires there even offline."""
    reminder_id = new_id()
    cmd = ReminderCommand(op="add", reminder_id=reminder_id, **body.model_dump())
    if await services.dispatcher.ask(Send(device_id, "reminder", cmd)) is None:
        raise HTTPException(404, f"no device {device_id!r}")
    return {"id": reminder_id, "device_id": device_id, "status": "sent"}


@router.delete("/{device_id}/reminders/{reminder_id}", status_code=202, dependencies=[Operator],
               responses=declare(404, *DISPATCHER_ANSWERS))
async def delete_reminder(device_id: str, services: ServicesDep,
                          reminder_id: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")) -> dict:
    cmd = ReminderCommand(op="delete", reminder_id=reminder_id)
    if await services.dispatcher.ask(Send(device_id, "reminder", cmd)) is None:
        raise HTTPException(404, f"no device {device_id!r}")
    return {"id": reminder_id, "device_id": device_id, "status": "sent"}


async def _command(kind: str, device_id: str, services) -> DevicePublic:
    dev = await services.dispatcher.ask(SteerDevice(device_id, kind))
    if dev is None:
        raise HTTPException(404, f"no device {device_id!r}")
    return _public(dev, {}, services)


@router.post("/{device_id}/cordon", response_model=DevicePublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def cordon(device_id: str, services: ServicesDep) -> DevicePublic:
    """No new jobs for this device; what it runs finishes."""
    return await _command("cordon", device_id, services)


@router.post("/{device_id}/drain", response_model=DevicePublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def drain(device_id: str, services: ServicesDep) -> DevicePublic:
    """Cordon, and put the jobs assigned to it but not started back in the queue."""
    return await _command("drain", device_id, services)


@router.post("/{device_id}/uncordon", response_model=DevicePublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def uncordon(device_id: str, services: ServicesDep) -> DevicePublic:
    """Let the device take new jobs again."""
    return await _command("uncordon", device_id, services)
