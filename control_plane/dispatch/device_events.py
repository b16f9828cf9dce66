"""Device messages turned into database transitions: presence (state, telemetry), journal
records, OTA reports, and the events of a job's live attempt (started, chunk, done, failed,
returned). Stale or repeated job events (another attempt, another device) are ignored."""

from __future__ import annotations

import logging
from typing import NamedTuple

from sqlmodel import Session

from control_plane import events, jobs, status_history, telemetry_history
from control_plane.audio_store import AudioIntegrityError
from control_plane.dispatch import attempts
from control_plane.dispatch.context import Context
from control_plane.dispatch.outbox import Outbox
from control_plane.models import AudioArtifact, Device, DeviceRecord, Job, MqttUser
from voicefleet import protocol as p
from voicefleet.ids import now
from voicefleet.mqtt import Inbound

log = logging.getLogger(__name__)


class Decoded(NamedTuple):
    """A device message parsed once (topic and payload); ``msg`` is None when it was malformed."""

    item: Inbound
    device_id: str | None = None
    msg: p.Message | None = None
    data: bytes | None = None


def decode(ctx: Context, item: Inbound) -> Decoded:
    """A malformed message is logged, counted by reason and comes back with no ``msg``."""
    try:
        device_id, kind = p.parse_device_topic(item.topic)
        msg, data = p.decode(kind, item.payload)
    except p.ProtocolError as exc:
        log.warning("dropped message on %s: %s", item.topic, exc)
        ctx.metrics.dropped.labels(exc.code).inc()
        return Decoded(item)
    return Decoded(item, device_id, msg, data)


def handle(ctx: Context, session: Session, d: Decoded, out: Outbox) -> None:
    item, device_id, msg, data = d
    if msg is None:
        return
    if _claims_presence(msg) and _offline_and_revoked(session, device_id):
        # Revocation marks it offline at once, but the broker drops it a moment later: what it
        # says in between must not bring it back (its last will may then be refused by the ACL).
        log.info("ignored %s from %s: its login was revoked", msg.type, device_id)
        return
    if isinstance(msg, p.DeviceState):
        _on_state(ctx, session, device_id, msg, out, retained=item.retained, settling=item.settling)
    elif isinstance(msg, p.Telemetry):
        _on_telemetry(ctx, session, device_id, msg)
    elif isinstance(msg, p.DeviceRecord):
        _on_record(ctx, session, device_id, msg)
    elif isinstance(msg, p.OtaReport):
        ctx.rollouts.on_report(session, device_id, msg, out.publish)
    elif type(msg) in JOB_EVENTS:
        job = jobs.current_attempt(session, job_id=msg.job_id, attempt=msg.attempt, device_id=device_id)
        if job is None:
            log.debug("ignored %s for %s attempt %s from %s (stale or repeated)", msg.kind, msg.job_id,
                      msg.attempt, device_id)
            return
        JOB_EVENTS[type(msg)](ctx, session, job, msg, data, out)


# -- presence -----------------------------------------------------------------------------


def _claims_presence(msg: p.Message) -> bool:
    return isinstance(msg, p.Telemetry) or (isinstance(msg, p.DeviceState) and msg.status != "offline")


def _offline_and_revoked(session: Session, device_id: str) -> bool:
    """Marked offline and its broker login revoked (a device without one, on an open broker, never
    is). Only an offline device is looked up: telemetry from online ones costs no extra query, and
    the presence handlers then find the device row in the session already."""
    dev = session.get(Device, device_id)
    if dev is None or dev.status != "offline":
        return False
    user = session.get(MqttUser, device_id)
    return user is not None and user.revoked_at is not None


def _on_state(ctx: Context, session: Session, device_id: str, st: p.DeviceState, out: Outbox, *,
              retained: bool = False, settling: bool = False) -> None:
    known = session.get(Device, device_id)
    dev = known or Device(id=device_id)
    changed = known is None or dev.status != st.status
    came_back = st.status == "online" and dev.status != "online"
    restarted = bool(st.boot_id) and bool(dev.boot_id) and dev.boot_id != st.boot_id
    dev.status = st.status
    dev.last_seen_at = now()
    if st.status != "offline":
        dev.role = st.role
        dev.engine = st.engine.model_dump() if st.engine else None
        dev.capabilities = st.capabilities.model_dump() if st.capabilities else None
        dev.engines = [o.model_dump() for o in st.offers()] or None
        dev.max_concurrency = st.max_concurrency
        dev.agent_version = st.agent_version
        dev.boot_id = st.boot_id
        dev.image = st.image.model_dump() if st.image else None
    session.add(dev)
    if restarted:
        attempts.take_back(ctx, session, device_id, "device restarted", out)
    elif st.status == "offline" and (retained or settling):
        # Old news replayed to us, or a last will amid our own reconnection (the broker restarting
        # fires every client's): the broker's upheaval, not this device's doing, so its jobs go back
        # uncounted; they may run again as often as it restarts.
        attempts.take_back(ctx, session, device_id, "device went offline while the broker reconnected", out,
                           counted=False)
    elif st.status == "offline":
        attempts.take_back(ctx, session, device_id, "device went offline", out)
    ctx.fleet.update(dev)
    ctx.rollouts.on_state(session, device_id, st, out.publish)
    view = ctx.fleet.devices.get(device_id)  # none for a device that never said what it can do
    if came_back and view is not None:
        # A retained "online" is old news (it may predate a crash): wait for a live message.
        view.confirmed = not retained
    if changed:
        revoked = _offline_and_revoked(session, device_id)
        why = "its login was revoked" if revoked else st.reason or "state message"  # st.reason: a recycle's
        announce(ctx, session, dev, why=why, alarm=not revoked)
    out.reschedule = True
    log.info("device %s is %s", device_id, st.status)


def _on_telemetry(ctx: Context, session: Session, device_id: str, t: p.Telemetry) -> None:
    dev = session.get(Device, device_id)
    if dev is None:
        return  # telemetry before the first state message: nothing to attach it to
    dev.telemetry = t.model_dump(exclude={"v", "type", "device_id"})
    dev.last_seen_at = now()
    telemetry_history.history_of(ctx.engine).record(session, device_id, dev.telemetry, dev.last_seen_at)
    came_back = dev.status == "offline"
    if came_back:  # we timed it out, but it was only paused or cut off: it is back
        log.info("device %s is heard from again", device_id)
        dev.status = "online"
    session.add(dev)
    ctx.fleet.update(dev)
    view = ctx.fleet.devices.get(device_id)
    if view is not None:
        view.confirmed = True
    gate = ctx.fleet.gate_of(dev)
    if came_back or ctx.fleet.gates.setdefault(device_id, gate) != gate:  # back, confirmed, throttling...
        announce(ctx, session, dev, why="heard from again (telemetry)" if came_back else "")


def announce(ctx: Context, session: Session, dev: Device, *, why: str = "", alarm: bool = True) -> None:
    """A ``device`` event with the scheduler's gate as it is now (and an alarm when it went offline);
    a status or cordon change is also kept in its status history, committed with the change."""
    status_history.record(session, dev, why)
    gate = ctx.fleet.gates[dev.id] = ctx.fleet.gate_of(dev)
    events.device_changed(session, dev, gate=gate, why=why, alarm=alarm)


def _on_record(ctx: Context, session: Session, device_id: str, rec: p.DeviceRecord) -> None:
    """Keep a replayed journal record once, whatever number of times it arrives."""
    if rec.device_id != device_id:
        log.warning("dropped a record from %s claiming to be %s", device_id, rec.device_id)
        ctx.metrics.dropped.labels("wrong_device").inc()
        return
    session.flush()  # a redelivery within this batch must see the first copy
    if session.get(DeviceRecord, rec.record_id) is None:
        session.add(DeviceRecord(id=rec.record_id, device_id=device_id, seq=rec.seq, record=rec.record,
                                 ts=rec.ts, body=rec.body))


# -- job events (for the live attempt only) -----------------------------------------------


def _on_started(ctx: Context, session: Session, job: Job, ev: p.JobStarted, data, out: Outbox) -> None:
    jobs.mark_started(session, job, ts=ev.ts)
    out.notify.add(job.id)


def _on_chunk(ctx: Context, session: Session, job: Job, ev: p.AudioChunk, data: bytes, out: Outbox) -> None:
    ctx.store.append(job.id, job.attempt, ev.seq, data)
    if job.first_chunk_at is None:
        jobs.mark_first_chunk(session, job, sample_rate=ev.sample_rate)
        ctx.metrics.first_chunk.observe(job.first_chunk_at - job.created_at)
    out.notify.add(job.id)


def _on_done(ctx: Context, session: Session, job: Job, ev: p.JobDone, data, out: Outbox) -> None:
    try:
        stored = ctx.store.finalize(job.id, job.attempt, sample_rate=ev.sample_rate, chunks=ev.chunks,
                                    sha256=ev.sha256)
    except AudioIntegrityError as exc:
        attempts.fail(ctx, session, job, code="audio_incomplete", text=str(exc), retryable=True, out=out,
                      event_id=ev.event_id)
        return
    device_id = job.device_id
    job.sample_rate = ev.sample_rate
    jobs.pending(session, AudioArtifact).append(
        {"job_id": job.id, "key": stored.key, "sample_rate": ev.sample_rate, "samples": stored.samples,
         "bytes": stored.bytes, "sha256": stored.sha256, "engine": ev.engine.name, "model": ev.engine.model,
         "created_at": now()})
    rtt = None
    if ev.first_chunk_s is not None and job.first_chunk_at is not None and job.assigned_at is not None:
        rtt = (job.first_chunk_at - job.assigned_at) - ev.first_chunk_s
    ctx.fleet.stats.observe_done(device_id, ev.engine.name, lang=job.lang, chars=jobs.spoken_chars(job.text),
                                 audio_s=ev.samples / ev.sample_rate, synth_s=ev.synth_s, rtt_s=rtt)
    spoken_by, preset = _who_spoke(ctx, job, ev)
    jobs.mark_done(session, job, event_id=ev.event_id, spoken_by=spoken_by)
    ctx.metrics.spoken.labels(ev.engine.name, preset, spoken_by["tier"] or "").inc()
    ctx.metrics.total.observe(job.finished_at - job.created_at)
    attempts.ended(ctx, job, device_id, out)


def _who_spoke(ctx: Context, job: Job, ev: p.JobDone) -> tuple[dict, str]:
    """What the device says spoke the job, its tier from what the device offers; and the voice as
    the metrics count it (a cloned voice as "cloned": its id would grow the label set)."""
    planned = job.spoken_by or {}
    view = ctx.fleet.devices.get(job.device_id or "")
    offer = view.offer(ev.engine.name) if view is not None else None
    if offer is not None:
        tier = offer.tier
    else:  # the device is gone from the fleet view: what placement planned, if that engine spoke
        tier = planned.get("tier") if planned.get("engine") == ev.engine.name else None
    voice = ev.voice or planned.get("voice")
    preset = voice if offer is None or voice in offer.capabilities.voices else "cloned"
    who = {"engine": ev.engine.name, "version": ev.engine.version, "model": ev.engine.model, "voice": voice,
           "tier": tier}
    if ev.fallback:  # the device's own: the planned engine could not read the text
        who["fallback"] = {"from_tier": planned.get("tier"), "to_tier": tier, "reason": ev.fallback}
    return who, preset or ""


def _on_failed(ctx: Context, session: Session, job: Job, ev: p.JobFailed, data, out: Outbox) -> None:
    attempts.fail(ctx, session, job, code=ev.error.code, text=ev.error.text, retryable=ev.retryable, out=out,
                  event_id=ev.event_id)


def _on_returned(ctx: Context, session: Session, job: Job, ev: p.JobReturned, data, out: Outbox) -> None:
    attempts.hand_back(ctx, session, job, reason=ev.reason, event_id=ev.event_id, out=out)


JOB_EVENTS = {p.JobStarted: _on_started, p.AudioChunk: _on_chunk, p.JobDone: _on_done, p.JobFailed: _on_failed,
              p.JobReturned: _on_returned}
