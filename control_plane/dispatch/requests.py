"""Commands from HTTP handlers, handled on the dispatcher thread inside its batch transaction.
Each handler answers its ``Ask`` (the answer goes out after the commit) and never raises for a
refusal: a refused request has written nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlmodel import Session

from control_plane import jobs
from control_plane.dispatch import attempts
from control_plane.dispatch.commands import (
    Ask,
    Cancel,
    MarkOffline,
    RolloutCommand,
    Send,
    SteerDevice,
    Submit,
)
from control_plane.dispatch.context import Context
from control_plane.dispatch.device_events import announce
from control_plane.dispatch.outbox import Outbox
from control_plane.models import ACTIVE_STATES, TERMINAL_STATES, Device, Job, JobCreate, MqttUser
from control_plane.rollouts import RolloutError
from voicefleet import protocol as p

log = logging.getLogger(__name__)
Handler = Callable[[Context, Session, Ask, Outbox], None]


def handle(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    command = ask.command
    handler = _rollout if isinstance(command, RolloutCommand) else HANDLERS[type(command)]
    handler(ctx, session, ask, out)


def _submit(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    cmd: Submit = ask.command
    fleet = ctx.fleet
    views = fleet.views()
    servable = {d for v in views if v.gate(fleet.stats) is None for d in v.capabilities.dialects}
    specs: list[JobCreate] = [jobs.resolve(spec, servable) for spec in cmd.specs]
    # a preset by its own name or as ENGINE:PRESET (that engine's only)
    presets = {v for view in views for o in view.offers for v in (*o.capabilities.voices, *o.voices())}
    try:
        for i, spec in enumerate(specs):
            try:
                jobs.check_voice(session, spec, presets, owner=cmd.voice_owner)
                jobs.check_servable(spec, views, fleet.stats, grace_s=ctx.settings.offline_grace_s)
            except jobs.Unservable as exc:
                raise jobs.Unservable(f"jobs[{i}]: {exc.text}" if len(specs) > 1 else exc.text) from None
        _check_room(ctx, specs)
    except (jobs.Unservable, jobs.QueueFull) as exc:
        out.answer(ask, error=exc)
        return
    rows = [jobs.add_job(session, spec=spec, max_attempts=ctx.settings.max_attempts, owner=cmd.owner)
            for spec in specs]
    for row in rows:
        fleet.queued[row["tier"]] += 1
    out.answer(ask, rows)
    out.reschedule = True


def _check_room(ctx: Context, specs: list[JobCreate]) -> None:
    """QueueFull when these jobs would overflow their tier's queue or the whole queue."""
    fleet, settings = ctx.fleet, ctx.settings
    wanted = {"interactive": 0, "batch": 0}
    for spec in specs:
        wanted[spec.tier] += 1
    bounds = {"interactive": settings.max_queued_interactive, "batch": settings.max_queued_batch}
    for tier, n in wanted.items():
        if n and fleet.queued[tier] + n > bounds[tier]:
            raise jobs.QueueFull(fleet.queued[tier], fleet.retry_after(fleet.queued[tier] + n - bounds[tier]),
                                 tier=tier)
    excess = fleet.total_queued + len(specs) - settings.max_queued_jobs
    if excess > 0:
        raise jobs.QueueFull(fleet.total_queued, fleet.retry_after(excess))


def _cancel(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    cmd: Cancel = ask.command
    job = session.get(Job, cmd.job_id)
    if job is not None and job.state not in TERMINAL_STATES:
        device_id, was_active = job.device_id, job.state in ACTIVE_STATES
        if job.state == "queued":
            ctx.fleet.queued[job.tier] -= 1
        jobs.cancel_job(session, job)
        if was_active:
            ctx.store.discard(job.id, job.attempt)
            cancel = p.JobCancel(job_id=job.id, attempt=job.attempt, reason="cancelled by client")
            out.publish.append((p.device_topic(device_id, "cancel"), p.encode(cancel)))
        attempts.ended(ctx, job, device_id if was_active else None, out)
    out.answer(ask, job)


def _steer(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    cmd: SteerDevice = ask.command
    dev = session.get(Device, cmd.device_id)
    if dev is not None:
        dev.cordoned = cmd.action != "uncordon"
        session.add(dev)
        if cmd.action == "drain":
            attempts.take_back_unstarted(ctx, session, dev.id, out)
        ctx.fleet.update(dev)
        announce(ctx, session, dev, why=f"{cmd.action}ed by an operator" + _revoked_note(session, dev.id))
        out.reschedule = True
        log.info("device %s: %s by an operator", dev.id, cmd.action)
    out.answer(ask, dev)


def _revoked_note(session: Session, device_id: str) -> str:
    """Revocation cordons the device first: its status history says why."""
    user = session.get(MqttUser, device_id)
    return " (its login was revoked)" if user is not None and user.revoked_at is not None else ""


def _send(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    cmd: Send = ask.command
    dev = session.get(Device, cmd.device_id)
    if dev is not None:
        out.publish.append((p.device_topic(cmd.device_id, cmd.kind), p.encode(cmd.message)))
    out.answer(ask, dev)


def _mark_offline(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    cmd: MarkOffline = ask.command
    offline = p.DeviceState(device_id=cmd.device_id, status="offline")
    out.retained.append((p.device_topic(cmd.device_id, "state"), p.encode(offline)))
    out.answer(ask)


def _rollout(ctx: Context, session: Session, ask: Ask, out: Outbox) -> None:
    cmd: RolloutCommand = ask.command
    try:
        result = cmd.run(ctx.rollouts, session, out.publish)
    except RolloutError as exc:
        out.answer(ask, error=exc)
        return
    ctx.rollouts.due = True  # tick at the end of this batch, not at the next housekeeping
    out.answer(ask, result)


HANDLERS: dict[type, Handler] = {Submit: _submit, Cancel: _cancel, SteerDevice: _steer, Send: _send,
                                 MarkOffline: _mark_offline}
