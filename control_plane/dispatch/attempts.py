"""How an attempt ends short of done: failed (retried or final), handed back to the queue, or
taken back from a device that went away. Each frees the device's slot and wakes followers."""

from __future__ import annotations

from sqlmodel import Session

from control_plane import jobs
from control_plane.dispatch.context import Context
from control_plane.dispatch.outbox import Outbox
from control_plane.models import TERMINAL_STATES, Job
from voicefleet import protocol as p


def ended(ctx: Context, job: Job, device_id: str | None, out: Outbox) -> None:
    """An attempt ended: its device has a free slot, followers wake, final states count."""
    ctx.fleet.released(job.id, device_id)
    out.notify.add(job.id)
    out.reschedule = True
    if job.state in TERMINAL_STATES:
        ctx.metrics.finished.labels(job.state).inc()


def fail(ctx: Context, session: Session, job: Job, *, code: str, text: str, retryable: bool, out: Outbox,
         event_id: str | None = None) -> None:
    """The attempt failed with ``code``. Only the device's own faults count towards its health gate:
    a lost device is not an error rate, and a request's fault (``p.REQUEST_FAULTS``: text with nothing
    to speak, a combination no engine offers) says nothing about the device, so one client's bad
    requests never close a device to everyone. Such a job ends at once: every device would refuse it."""
    device_id = job.device_id
    ctx.store.discard(job.id, job.attempt)
    request_fault = p.request_fault(code)
    if device_id and code != "device_lost" and not request_fault:
        ctx.fleet.stats.observe_outcome(device_id, ok=False)
    retryable = retryable and not request_fault
    if jobs.fail_attempt(session, job, code=code, text=text, retryable=retryable, event_id=event_id):
        ctx.fleet.queued[job.tier] += 1
    ended(ctx, job, device_id, out)


def hand_back(ctx: Context, session: Session, job: Job, *, reason: str, out: Outbox, cancel: str | None = None,
              event_id: str | None = None) -> None:
    """Back to the queue, not counted as a failure; ``cancel``: tell the device to drop it, saying why."""
    device_id = job.device_id
    if cancel is not None:
        out.publish.append((p.device_topic(device_id, "cancel"),
                            p.encode(p.JobCancel(job_id=job.id, attempt=job.attempt, reason=cancel))))
    ctx.store.discard(job.id, job.attempt)
    jobs.hand_back(session, job, reason=reason, event_id=event_id)
    ctx.fleet.queued[job.tier] += 1
    ended(ctx, job, device_id, out)


def take_back(ctx: Context, session: Session, device_id: str, reason: str, out: Outbox, *,
              counted: bool = True) -> None:
    """Every job on a device that is gone fails its attempt (retryable: it goes to another), or, not
    ``counted``, goes back to the queue without using up an attempt, the device told to drop it."""
    session.flush()  # the query must see this batch's own transitions (a done just before)
    for job in jobs.active_jobs_of(session, device_id=device_id):
        if counted:
            fail(ctx, session, job, code="device_lost", text=reason, retryable=True, out=out)
        else:
            hand_back(ctx, session, job, reason=reason, cancel=reason, out=out)


def take_back_unstarted(ctx: Context, session: Session, device_id: str, out: Outbox) -> None:
    """Jobs assigned to the device but not started go back to the queue (it is told to drop them)."""
    session.flush()
    for job in jobs.active_jobs_of(session, device_id=device_id):
        if job.state == "assigned":
            hand_back(ctx, session, job, reason="device drained by an operator",
                      cancel="device drained by an operator", out=out)
