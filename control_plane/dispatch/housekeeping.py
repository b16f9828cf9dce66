"""What the loop does on the clock: take back leases that ran out and devices that went silent,
move jobs off devices running far over their estimate (hedging), and tick rollouts."""

from __future__ import annotations

import logging

from sqlmodel import Session, select

from control_plane import jobs
from control_plane.dispatch import attempts
from control_plane.dispatch.context import Context
from control_plane.dispatch.device_events import announce
from control_plane.dispatch.outbox import Outbox
from control_plane.models import ACTIVE_STATES, Device, Job
from control_plane.scheduler import Planner
from voicefleet import protocol as p
from voicefleet.ids import now

log = logging.getLogger(__name__)


def housekeeping(ctx: Context, out: Outbox) -> None:
    """The leader takes back expired leases and silent devices and hedges; every replica then resyncs
    its fleet from the database."""
    ctx.fleet.measure_drain()
    if ctx.leads():
        _singletons(ctx, out)
    ctx.reload_fleet()
    if ctx.fleet.total_queued:
        out.reschedule = True


def _singletons(ctx: Context, out: Outbox) -> None:
    settings = ctx.settings
    t = now()
    with ctx.session() as session:
        for job in jobs.expired_leases(session, at=t):
            out.publish.append((p.device_topic(job.device_id, "cancel"),
                                p.encode(p.JobCancel(job_id=job.id, attempt=job.attempt, reason="lease expired"))))
            attempts.fail(ctx, session, job, code="lease_expired", retryable=True, out=out,
                          text=f"not finished within its {settings.lease_s:.0f}s lease")
        for dev in _silent(ctx, session, t):
            log.warning("device %s missed its heartbeats; marking it offline", dev.id)
            dev.status = "offline"
            session.add(dev)
            announce(ctx, session, dev, why="it missed its heartbeats")
            attempts.take_back(ctx, session, dev.id, "device missed its heartbeats", out)
            out.reschedule = True
        _hedge(ctx, session, out)
        jobs.commit(session)


def _silent(ctx: Context, session: Session, t) -> list[Device]:
    """Devices not heard for a heartbeat timeout; none while the dispatcher's own broker connection
    is down or younger than that, since then the silence is its own (the broker restarting, say)."""
    timeout = ctx.settings.heartbeat_timeout_s
    if ctx.link_age() < timeout:
        return []
    return list(session.exec(select(Device).where(Device.status != "offline", Device.last_seen_at < t - timeout)).all())


def _hedge(ctx: Context, session: Session, out: Outbox) -> None:
    """Take a job off a device where it runs far longer than expected, when another device is
    expected to finish it sooner than the slow one will (the slow attempt is cancelled: a job
    has one live attempt, so this is a hand-off, not a race)."""
    settings, fleet = ctx.settings, ctx.fleet
    factor = settings.hedge_factor
    if factor <= 0 or settings.scheduler_policy != "latency":
        return
    t = now()
    for view in fleet.views():
        for r in list(view.running.values()):
            elapsed = t - r.assigned_at
            if not r.expected_s or elapsed < max(settings.hedge_min_s, factor * r.expected_s):
                continue
            job = session.get(Job, r.job_id)
            if job is None or job.device_id != view.id or job.state not in ACTIVE_STATES:
                continue
            others = [v for v in fleet.views() if v.id != view.id]
            alternative = Planner(others, fleet.stats, now=t).place(jobs.info_of(job))
            if alternative.expected_s is None or alternative.expected_s >= 0.5 * elapsed:
                continue  # the slow device is still the better bet
            fleet.stats.observe_overrun(view.id, r.engine, elapsed / max(r.audio_s, 1e-3))
            ctx.metrics.hedged.inc()
            attempts.hand_back(ctx, session, job, cancel="hedged: running far over its estimate", out=out,
                               reason=f"hedged after {elapsed:.1f}s (expected {r.expected_s:.1f}s) on {view.id}")


def tick_rollouts(ctx: Context, out: Outbox) -> None:
    """Rollouts move in a transaction of their own, on the leader: a fault there is logged, never stops
    the loop."""
    if not ctx.leads():
        return
    publish: list[tuple[str, bytes]] = []
    try:
        with ctx.session() as session:
            ctx.rollouts.tick(session, publish)
            session.commit()
    except Exception:
        log.exception("rollout tick failed; trying again at the next housekeeping")
        return
    out.publish += publish
