"""Rollouts: start one, follow it (devices, events), and steer it: pause, resume, abort, roll back."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from control_plane.api.auth import Operator, PrincipalDep, Reader
from control_plane.api.deps import ServicesDep, SessionDep
from control_plane.api.errors import DISPATCHER_ANSWERS, ErrorText, declare
from control_plane.dispatch import (
    AbortRollout,
    CreateRollout,
    PauseRollout,
    ResumeRollout,
    RollbackRollout,
    RolloutCommand,
    SteerRollout,
)
from control_plane.models import (
    Rollout,
    RolloutEvent,
    RolloutEventPublic,
    RolloutPublic,
    RolloutTarget,
    RolloutTargetPublic,
)
from control_plane.rollouts import Plan, RolloutCreate, RolloutError
from control_plane.rollouts.gates import gate_figures
from control_plane.rollouts.machine import choose_targets, start_state

router = APIRouter(prefix="/v1/rollouts", tags=["rollouts"])
_STEER_ANSWERS = declare("unknown_rollout", "wrong_state", *DISPATCHER_ANSWERS)


def _public(session: Session, rollout: Rollout, detail: bool = False) -> RolloutPublic:
    targets = session.exec(select(RolloutTarget).where(RolloutTarget.rollout_id == rollout.id)
                           .order_by(RolloutTarget.phase, RolloutTarget.device_id)).all()
    extra = {"targets": dict(Counter(t.state for t in targets)),
             "devices": [RolloutTargetPublic.model_validate(t) for t in targets] if detail else None}
    return RolloutPublic.model_validate(rollout, update=extra)


async def _ask(services, command: RolloutCommand) -> Rollout:
    return await services.dispatcher.ask(command)  # a RolloutError answers with its code (api/errors.py)


@router.post("", status_code=201, response_model=RolloutPublic, dependencies=[Operator],
             responses=declare("unknown_version", "rollout_active", "no_targets", *DISPATCHER_ANSWERS))
async def create(body: RolloutCreate, who: PrincipalDep, services: ServicesDep, session: SessionDep) -> RolloutPublic:
    """Start rolling a registry version out: canaries first, then the waves (docs/rollouts.md)."""
    rollout = await _ask(services, CreateRollout(spec=body, by=who.subject))
    return _public(session, session.get(Rollout, rollout.id), detail=True)


class PreviewDevice(BaseModel):
    device_id: str
    phase: int  # 0: a canary, k: wave k
    online: bool
    version: str | None  # what it runs now
    tags: list[str]
    state: str  # what the rollout would make of it at the start: pending, activated (runs it already), skipped
    note: str | None = None  # why not pending


class RolloutPreview(BaseModel):
    plan: Plan  # as it would run: every field the body left out at its default
    targets: int
    phases: int  # the canary and the waves
    devices: list[PreviewDevice]  # in the order they would be reached: the canaries, then each wave
    refused: ErrorText | None = None  # what creating it would answer instead (devices then empty)


@router.post("/preview", response_model=RolloutPreview, dependencies=[Operator])
def preview(body: RolloutCreate, session: SessionDep) -> RolloutPreview:
    """The devices ``POST /v1/rollouts`` with this body would reach now, canaries first, then each wave;
    nothing is started. A selector or canaries the creation would refuse (naming devices that do not run
    the model, or picking none) is answered in ``refused``: a preview of nothing, not an error."""
    phases = 1 + len(body.plan.waves)
    try:
        fleet, phase, online = choose_targets(session, body)
    except RolloutError as err:
        return RolloutPreview(plan=body.plan, targets=0, phases=phases, devices=[],
                              refused=ErrorText(code=err.code, text=err.text))
    by_id = {dm.device_id: dm for dm in fleet}
    devices = []
    for device_id, k in phase.items():  # canaries first, then the waves in order
        dm = by_id[device_id]
        state, note = start_state(dm, body.version)
        devices.append(PreviewDevice(device_id=device_id, phase=k, online=device_id in online, version=dm.version,
                                     tags=dm.tags or [], state=state, note=note))
    return RolloutPreview(plan=body.plan, targets=len(devices), phases=phases, devices=devices)


@router.get("", response_model=list[RolloutPublic], dependencies=[Reader])
def list_rollouts(session: SessionDep, state: str | None = None, limit: int = 100) -> list[RolloutPublic]:
    query = select(Rollout).order_by(Rollout.created_at.desc()).limit(max(1, min(limit, 1000)))
    if state is not None:
        query = query.where(Rollout.state == state)
    return [_public(session, r) for r in session.exec(query).all()]


@router.get("/{rollout_id}", response_model=RolloutPublic, dependencies=[Reader], responses=declare(404))
def get_rollout(rollout_id: str, session: SessionDep) -> RolloutPublic:
    return _public(session, _get(session, rollout_id), detail=True)


@router.get("/{rollout_id}/events", response_model=list[RolloutEventPublic], dependencies=[Reader],
            responses=declare(404))
def events(rollout_id: str, session: SessionDep, after_id: int = 0, limit: int = 1000) -> list[RolloutEventPublic]:
    """Every step, in order; ``after_id`` pages on (the id of the last event seen)."""
    _get(session, rollout_id)
    rows = session.exec(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id, RolloutEvent.id > after_id)
                        .order_by(RolloutEvent.id).limit(max(1, min(limit, 10_000)))).all()
    return [RolloutEventPublic.model_validate(e) for e in rows]


class GateFigure(BaseModel):
    gate: str  # the plan's gate: max_failures, max_error_rate, max_rtf_ratio, max_first_chunk_ratio, max_cer
    limit: float | None  # the plan's bound (None: the gate is off)
    value: float | None  # what the rollout's devices measure now (None: nothing yet)
    count: int  # what the value is made of: failed devices, job attempts, devices measured, phrases heard
    over: bool  # past its bound: the rollout halts on it


@router.get("/{rollout_id}/gates", response_model=list[GateFigure], dependencies=[Reader], responses=declare(404))
def gates(rollout_id: str, session: SessionDep) -> list[GateFigure]:
    """Each gate's bound and what the devices this rollout updated measure against it now (docs/rollouts.md)."""
    rollout = _get(session, rollout_id)
    targets = session.exec(select(RolloutTarget).where(RolloutTarget.rollout_id == rollout_id)).all()
    return [GateFigure(**row) for row in gate_figures(session, rollout, list(targets))]


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


@router.post("/{rollout_id}/pause", response_model=RolloutPublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def pause(rollout_id: str, services: ServicesDep, session: SessionDep,
               body: Reason | None = None) -> RolloutPublic:
    """Send no more installs; what devices are installing finishes, and gates still apply."""
    return await _steer(services, session, PauseRollout(rollout_id, reason=(body or Reason()).reason))


@router.post("/{rollout_id}/resume", response_model=RolloutPublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def resume(rollout_id: str, services: ServicesDep, session: SessionDep) -> RolloutPublic:
    return await _steer(services, session, ResumeRollout(rollout_id))


@router.post("/{rollout_id}/abort", response_model=RolloutPublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def abort(rollout_id: str, services: ServicesDep, session: SessionDep,
               body: Reason | None = None) -> RolloutPublic:
    """Stop here: devices not yet updated are left alone, updated ones keep the new version."""
    return await _steer(services, session, AbortRollout(rollout_id, reason=(body or Reason()).reason))


@router.post("/{rollout_id}/rollback", response_model=RolloutPublic, dependencies=[Operator], responses=_STEER_ANSWERS)
async def rollback(rollout_id: str, services: ServicesDep, session: SessionDep,
                   body: Reason | None = None) -> RolloutPublic:
    """Stop, and return every device this rollout updated to the version it ran before."""
    return await _steer(services, session, RollbackRollout(rollout_id, reason=(body or Reason()).reason))


async def _steer(services, session: Session, command: SteerRollout) -> RolloutPublic:
    await _ask(services, command)
    return _public(session, _get(session, command.rollout_id), detail=True)


def _get(session: Session, rollout_id: str) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise HTTPException(404, f"no rollout {rollout_id!r}")
    return rollout
