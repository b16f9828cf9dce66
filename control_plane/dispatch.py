"""The MQTT side of the control plane: one thread that turns device messages into database
transitions and hands queued jobs to devices with free slots.

Messages arrive on a queue (the MQTT callback does nothing else) and are handled in batches,
one transaction a batch; each message is acked to the broker only after its batch committed,
so a crash loses nothing (the broker redelivers). Announcements (job assignments, cancels,
wake-ups of HTTP clients) go out only after the commit that they announce.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, select

from control_plane import jobs
from control_plane.audio_store import AudioIntegrityError, LocalAudioStore
from control_plane.core.config import Settings
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.models import AudioArtifact, Device, Job, JobState
from control_plane.scheduler import DeviceView, pick_device
from voicefleet import protocol as p
from voicefleet.mqtt import Inbound, MqttClient

log = logging.getLogger(__name__)
WAKE = Inbound("", b"", 0, 0)  # put on the inbox to make the loop schedule at once
BATCH = 500
HOUSEKEEPING_S = 1.0


@dataclass
class _Outbox:
    """What a batch announces once it has committed."""

    publish: list[tuple[str, bytes]]
    notify: set[str]
    acks: list[Inbound]
    reschedule: bool = False


class Dispatcher:
    def __init__(self, *, engine: Engine, settings: Settings, store: LocalAudioStore, watch: JobWatch,
                 metrics: Metrics):
        self.engine = engine
        self.settings = settings
        self.store = store
        self.watch = watch
        self.metrics = metrics
        self.inbox: queue.Queue[Inbound] = queue.Queue()
        self.mqtt = MqttClient(
            settings.mqtt_url, settings.control_id, inbox=self.inbox,
            subscriptions=[(t, 1) for t in p.control_subscriptions()],
            session_expiry_s=settings.mqtt_session_expiry_s, keepalive_s=settings.mqtt_keepalive_s,
            manual_ack=True,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._handlers: dict[type, Callable[[Session, str, p.Message, bytes | None, _Outbox], None]] = {
            p.JobStarted: self._on_started,
            p.AudioChunk: self._on_chunk,
            p.JobDone: self._on_done,
            p.JobFailed: self._on_failed,
            p.JobReturned: self._on_returned,
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, mqtt_timeout_s: float = 10.0) -> None:
        self.store.clear_partials()
        self._thread.start()
        self.mqtt.start(mqtt_timeout_s)
        self.wake()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        self._thread.join(timeout=10)
        self.mqtt.stop()

    def wake(self) -> None:
        self.inbox.put(WAKE)

    @property
    def connected(self) -> bool:
        return self.mqtt.connected.is_set()

    def send_cancel(self, job: Job) -> None:
        if job.device_id:
            msg = p.JobCancel(job_id=job.id, attempt=job.attempt, reason="cancelled by client")
            self.mqtt.publish(p.device_topic(job.device_id, "cancel"), p.encode(msg))

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        next_housekeeping = time.monotonic()
        while not self._stop.is_set():
            batch, woken = self._drain(timeout=0.25)
            out = _Outbox([], set(), [], reschedule=woken)
            if batch:
                self._handle_batch(batch, out)
            if time.monotonic() >= next_housekeeping:
                self._housekeeping(out)
                next_housekeeping = time.monotonic() + HOUSEKEEPING_S
            if out.reschedule:
                self._schedule(out)
            self._announce(out)

    def _drain(self, timeout: float) -> tuple[list[Inbound], bool]:
        batch: list[Inbound] = []
        woken = False
        try:
            item = self.inbox.get(timeout=timeout)
            while True:
                if item is WAKE:
                    woken = True
                else:
                    batch.append(item)
                if len(batch) >= BATCH:
                    break
                item = self.inbox.get_nowait()
        except queue.Empty:
            pass
        return batch, woken

    def _handle_batch(self, batch: list[Inbound], out: _Outbox) -> None:
        try:
            with Session(self.engine) as session:
                for msg in batch:
                    self._handle(session, msg, out)
                session.commit()
            out.acks.extend(batch)
        except Exception:
            # One bad message must not sink the others: redo the batch one message at a time.
            log.exception("batch of %d failed; retrying one by one", len(batch))
            out.publish.clear()
            out.notify.clear()
            for msg in batch:
                one = _Outbox([], set(), [])
                try:
                    with Session(self.engine) as session:
                        self._handle(session, msg, one)
                        session.commit()
                except Exception:
                    log.exception("dropping message on %s that cannot be handled", msg.topic)
                    self.metrics.dropped.labels("handler_error").inc()
                    one = _Outbox([], set(), [])
                out.publish += one.publish
                out.notify |= one.notify
                out.reschedule |= one.reschedule
                out.acks.append(msg)

    def _announce(self, out: _Outbox) -> None:
        for topic, payload in out.publish:
            self.mqtt.publish(topic, payload)
        for msg in out.acks:
            if msg.qos:
                self.mqtt.ack(msg.mid, msg.qos)
        for job_id in out.notify:
            self.watch.notify(job_id)

    # -- device messages -------------------------------------------------------------------

    def _handle(self, session: Session, msg: Inbound, out: _Outbox) -> None:
        try:
            device_id, kind = p.parse_device_topic(msg.topic)
            decoded, data = p.decode(kind, msg.payload)
        except p.ProtocolError as exc:
            log.warning("dropped message on %s: %s", msg.topic, exc)
            self.metrics.dropped.labels(exc.code).inc()
            return
        if isinstance(decoded, p.DeviceState):
            self._on_state(session, device_id, decoded, out)
        elif isinstance(decoded, p.Telemetry):
            self._on_telemetry(session, device_id, decoded)
        elif type(decoded) in self._handlers:
            self._handlers[type(decoded)](session, device_id, decoded, data, out)

    def _on_state(self, session: Session, device_id: str, st: p.DeviceState, out: _Outbox) -> None:
        dev = session.get(Device, device_id) or Device(id=device_id)
        rebooted = bool(st.boot_id) and dev.boot_id != st.boot_id
        lost_jobs = st.status == "offline" or (rebooted and dev.boot_id != "")
        dev.status = st.status
        dev.last_seen_at = p.now()
        if st.status != "offline":
            dev.role = st.role
            dev.engine = st.engine.model_dump() if st.engine else None
            dev.capabilities = st.capabilities.model_dump() if st.capabilities else None
            dev.max_concurrency = st.max_concurrency
            dev.agent_version = st.agent_version
            dev.boot_id = st.boot_id
        session.add(dev)
        if lost_jobs:
            reason = "device went offline" if st.status == "offline" else "device restarted"
            self._take_back(session, device_id, reason, out)
        out.reschedule = True
        log.info("device %s is %s", device_id, st.status)

    def _on_telemetry(self, session: Session, device_id: str, t: p.Telemetry) -> None:
        dev = session.get(Device, device_id)
        if dev is None:
            return  # telemetry before the first state message: nothing to attach it to
        dev.telemetry = t.model_dump(exclude={"v", "type", "device_id"})
        dev.last_seen_at = p.now()
        session.add(dev)

    def _take_back(self, session: Session, device_id: str, reason: str, out: _Outbox) -> None:
        for job in jobs.active_jobs_of(session, device_id=device_id):
            self.store.discard(job.id, job.attempt)
            jobs.fail_attempt(session, job, code="device_lost", text=reason, retryable=True)
            self._finished(job, out)

    # -- job events ------------------------------------------------------------------------

    def _job(self, session: Session, device_id: str, ev) -> Job | None:
        job = jobs.current_attempt(session, job_id=ev.job_id, attempt=ev.attempt, device_id=device_id)
        if job is None:
            log.debug("ignored %s for %s attempt %s from %s (stale or repeated)", ev.kind, ev.job_id,
                      ev.attempt, device_id)
        return job

    def _on_started(self, session, device_id, ev: p.JobStarted, data, out) -> None:
        if job := self._job(session, device_id, ev):
            jobs.mark_started(session, job, ts=ev.ts)
            out.notify.add(job.id)

    def _on_chunk(self, session, device_id, ev: p.AudioChunk, data: bytes, out) -> None:
        if job := self._job(session, device_id, ev):
            self.store.append(job.id, job.attempt, ev.seq, data)
            if job.first_chunk_at is None:
                jobs.mark_first_chunk(session, job, sample_rate=ev.sample_rate)
                self.metrics.first_chunk.observe(job.first_chunk_at - job.created_at)
            out.notify.add(job.id)

    def _on_done(self, session, device_id, ev: p.JobDone, data, out) -> None:
        job = self._job(session, device_id, ev)
        if job is None:
            return
        try:
            stored = self.store.finalize(job.id, job.attempt, sample_rate=ev.sample_rate, chunks=ev.chunks,
                                         sha256=ev.sha256)
        except AudioIntegrityError as exc:
            self.store.discard(job.id, job.attempt)
            jobs.fail_attempt(session, job, code="audio_incomplete", text=str(exc), retryable=True,
                              event_id=ev.event_id)
            self._finished(job, out)
            return
        job.sample_rate = ev.sample_rate
        session.add(AudioArtifact(job_id=job.id, key=stored.key, sample_rate=ev.sample_rate, samples=stored.samples,
                                  bytes=stored.bytes, sha256=stored.sha256, engine=ev.engine.name,
                                  model=ev.engine.model))
        jobs.mark_done(session, job, event_id=ev.event_id)
        self.metrics.total.observe(job.finished_at - job.created_at)
        self._finished(job, out)

    def _on_failed(self, session, device_id, ev: p.JobFailed, data, out) -> None:
        if job := self._job(session, device_id, ev):
            self.store.discard(job.id, job.attempt)
            jobs.fail_attempt(session, job, code=ev.error.code, text=ev.error.text, retryable=ev.retryable,
                              event_id=ev.event_id)
            self._finished(job, out)

    def _on_returned(self, session, device_id, ev: p.JobReturned, data, out) -> None:
        if job := self._job(session, device_id, ev):
            self.store.discard(job.id, job.attempt)
            jobs.hand_back(session, job, reason=ev.reason, event_id=ev.event_id)
            self._finished(job, out)

    def _finished(self, job: Job, out: _Outbox) -> None:
        """An attempt ended: its slot is free, followers wake, final states are counted."""
        out.notify.add(job.id)
        out.reschedule = True
        if job.state in (JobState.done, JobState.failed, JobState.cancelled):
            self.metrics.finished.labels(job.state).inc()

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self, out: _Outbox) -> None:
        with Session(self.engine) as session:
            views = self._device_views(session)
            free = sum(v.free for v in views)
            if free <= 0:
                return
            assigned = 0
            # Claim more than the free slots so a job nobody can serve now cannot block the rest.
            for job in jobs.claim_queued(session, self.engine, limit=4 * free + 16):
                decision = pick_device(jobs.needs_of(job), views)
                if decision.device_id is None:
                    continue
                jobs.assign(session, job, device_id=decision.device_id, lease_s=self.settings.lease_s,
                            explain=decision.explain())
                next(v for v in views if v.id == decision.device_id).inflight += 1
                out.publish.append((p.device_topic(decision.device_id, "job"), p.encode(self._assignment(job))))
                out.notify.add(job.id)
                assigned += 1
                if assigned >= free:
                    break
            session.commit()

    def _device_views(self, session: Session) -> list[DeviceView]:
        inflight = jobs.inflight_by_device(session)
        return [
            DeviceView(id=d.id, status=d.status, capabilities=p.Capabilities.model_validate(d.capabilities),
                       max_concurrency=d.max_concurrency, inflight=inflight.get(d.id, 0))
            for d in session.exec(select(Device).where(Device.status == "online")).all()
            if d.capabilities is not None
        ]

    def _assignment(self, job: Job) -> p.JobAssign:
        return p.JobAssign(job_id=job.id, attempt=job.attempt, text=job.text, lang=job.lang, dialect=job.dialect,
                           voice=job.voice, instruction=job.instruction, lease_s=self.settings.lease_s)

    # -- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self, out: _Outbox) -> None:
        """Take back leases that ran out and devices that went silent."""
        t = p.now()
        with Session(self.engine) as session:
            for job in jobs.expired_leases(session, at=t):
                out.publish.append((p.device_topic(job.device_id, "cancel"),
                                    p.encode(p.JobCancel(job_id=job.id, attempt=job.attempt, reason="lease expired"))))
                self.store.discard(job.id, job.attempt)
                jobs.fail_attempt(session, job, code="lease_expired",
                                  text=f"not finished within its {self.settings.lease_s:.0f}s lease", retryable=True)
                self._finished(job, out)
            silent = session.exec(select(Device).where(
                Device.status != "offline", Device.last_seen_at < t - self.settings.heartbeat_timeout_s)).all()
            for dev in silent:
                log.warning("device %s missed its heartbeats; marking it offline", dev.id)
                dev.status = "offline"
                session.add(dev)
                self._take_back(session, dev.id, "device missed its heartbeats", out)
                out.reschedule = True
            session.commit()
