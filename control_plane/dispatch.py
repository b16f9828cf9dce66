"""The control plane's single writer: one thread that records submissions and cancels, turns
device messages into database transitions, and hands queued jobs to devices with free slots.

Everything arrives on one queue (HTTP handlers and the MQTT callback only enqueue) and is
handled in batches, one transaction a batch (group commit). A submit is answered, and a device
message acked to the broker, only after its batch committed, so a crash loses nothing
accepted (the broker redelivers what was not acked). Announcements (job assignments, cancels,
wake-ups of HTTP followers) go out only after the commit that they announce.

The fleet (capabilities, status, slots in use) is kept in memory for the scheduler and the
submit check, and reloaded from the database every housekeeping tick.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlmodel import Session, select

from control_plane import jobs
from control_plane.audio_store import AudioIntegrityError, LocalAudioStore
from control_plane.auth import signed_query
from control_plane.core.config import Settings
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.models import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    AudioArtifact,
    Device,
    DeviceRecord,
    Job,
    JobCreate,
    Voice,
)
from control_plane.registry import Registry
from control_plane.rollouts import RolloutError, Rollouts
from control_plane.scheduler import DeviceView, FleetStats, Planner, Running
from voicefleet import protocol as p
from voicefleet.mqtt import Inbound, MqttClient

log = logging.getLogger(__name__)
BATCH = 500
HOUSEKEEPING_S = 1.0
LINGER_S = 0.0005


@dataclass
class Command:
    """A request from an HTTP handler; its future is settled once the batch has committed."""

    kind: str  # submit | cancel | cordon | uncordon | drain | send
    arg: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future



def _settle(answers: list[tuple[Command, Any, BaseException | None]]) -> None:
    """Runs on the HTTP event loop: answer a batch's commands in one wake-up of the loop."""
    for cmd, result, error in answers:
        if cmd.future.done():  # the client went away
            continue
        if error is not None:
            cmd.future.set_exception(error)
        else:
            cmd.future.set_result(result)


WAKE = object()  # put on the inbox to make the loop run a scheduling pass at once


class _Decoded(NamedTuple):
    item: Any  # Inbound or Command
    device_id: str | None = None
    msg: p.Message | None = None
    data: bytes | None = None


@dataclass
class _Outbox:
    """What a batch announces once it has committed."""

    publish: list[tuple[str, bytes]] = field(default_factory=list)
    notify: set[str] = field(default_factory=set)
    acks: list[Inbound] = field(default_factory=list)
    answers: list[tuple[Command, Any, BaseException | None]] = field(default_factory=list)
    reschedule: bool = False


class Dispatcher:
    def __init__(self, *, engine: Engine, settings: Settings, store: LocalAudioStore, watch: JobWatch,
                 metrics: Metrics, url_secret: bytes = b""):
        self.engine = engine
        self.url_secret = url_secret
        self.rollouts = Rollouts(registry=Registry(settings.home / "models"), api_url=settings.api_url(),
                                 url_secret=url_secret)
        self.settings = settings
        self.store = store
        self.watch = watch
        self.metrics = metrics
        self.inbox: queue.Queue = queue.Queue()
        self.mqtt = MqttClient(
            settings.mqtt_url, settings.control_id, inbox=self.inbox,
            subscriptions=[(t, 1) for t in p.control_subscriptions()],
            session_expiry_s=settings.mqtt_session_expiry_s, keepalive_s=settings.mqtt_keepalive_s,
            manual_ack=True, login=settings.mqtt_login(),
        )
        self._devices: dict[str, DeviceView] = {}
        self.stats = FleetStats()  # learned RTFs, round trips, error rates: what the estimates use
        self._rr = 0  # round-robin cursor (for the comparison policies)
        self._prompt_hashes: dict[str, str] = {}  # cloned voices' prompt files, by storage key
        # queue depth per tier, exact after each housekeeping tick, tracked in between
        self._queued: dict[str, int] = {"interactive": 0, "batch": 0}
        self._drained = 0  # attempts ended since the last housekeeping tick
        self._drained_since = time.monotonic()
        self.drain_rate = 0.0  # attempts ended per second, smoothed: sizes Retry-After
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._events = {
            p.JobStarted: self._on_started,
            p.AudioChunk: self._on_chunk,
            p.JobDone: self._on_done,
            p.JobFailed: self._on_failed,
            p.JobReturned: self._on_returned,
        }

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, mqtt_timeout_s: float = 10.0) -> None:
        self.store.clear_partials()
        self._reload_fleet()
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

    # -- requests from HTTP handlers -------------------------------------------------------

    async def submit(self, specs: list[JobCreate], owner: str | None = None) -> list[dict[str, Any]]:
        """Persist jobs (all or none), owned by ``owner``, and return their rows; raises
        jobs.Unservable (naming the first job that no device could serve) or jobs.QueueFull."""
        return await self._ask("submit", (specs, owner))

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel a job (and tell its device); None if there is no such job."""
        return await self._ask("cancel", job_id)

    async def device_command(self, kind: str, device_id: str) -> Device | None:
        """cordon (no new jobs), uncordon, or drain (cordon and take back jobs not started yet)."""
        return await self._ask(kind, device_id)

    async def send(self, device_id: str, kind: str, message: p.Message) -> Device | None:
        """Publish ``message`` to a known device (QoS 1: a device that is away gets it on its return)."""
        return await self._ask("send", (device_id, kind, message))

    async def rollout(self, op: str, **kw) -> Any:
        """A rollout request (control_plane/rollouts.py ``Rollouts.command``), run on this thread."""
        return await self._ask("rollout", (op, kw))

    def device_view(self, device_id: str) -> DeviceView | None:
        return self._devices.get(device_id)

    async def _ask(self, kind: str, arg: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.inbox.put(Command(kind, arg, loop, future))
        return await future

    # -- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        next_housekeeping = time.monotonic()
        while not self._stop.is_set():
            batch, woken = self._drain(timeout=0.25)
            out = _Outbox(reschedule=woken)
            if batch:
                self._handle_batch(batch, out)
            housekept = time.monotonic() >= next_housekeeping
            if housekept:
                self._housekeeping(out)
                next_housekeeping = time.monotonic() + HOUSEKEEPING_S
            if housekept or self.rollouts.due:  # soaks end with no message; a report moves a rollout at once
                self._tick_rollouts(out)
            if out.reschedule:
                with self._session() as session:
                    self._schedule(session, out)
                    jobs.commit(session)
            self._announce(out)

    def _drain(self, timeout: float) -> tuple[list, bool]:
        """Wait for the first item, then linger briefly for more: messages that come in bursts
        (an agent's "started" and first chunk, 0.1 ms apart) share one transaction."""
        batch: list = []
        woken = False
        try:
            item = self.inbox.get(timeout=timeout)
            linger_until = time.monotonic() + LINGER_S
            while True:
                if item is WAKE:
                    woken = True
                else:
                    batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    wait = linger_until - time.monotonic()
                    if wait <= 0:
                        break
                    item = self.inbox.get(timeout=wait)
        except queue.Empty:
            pass
        return batch, woken

    def _session(self) -> Session:
        # No autoflush: within a batch we know what we changed; nothing expires on commit so
        # objects handed to HTTP handlers stay readable.
        return Session(self.engine, autoflush=False, expire_on_commit=False)

    def _handle_batch(self, batch: list, out: _Outbox) -> None:
        decoded = [self._decode(item) for item in batch]  # once: a retry below must not count drops twice
        try:
            with self._session() as session:
                # Held in a local: the session's identity map is weak, and the handlers' gets must hit it.
                loaded = jobs.jobs_by_id(session, {d.msg.job_id for d in decoded if isinstance(d.msg, p.JobEventBase)})
                for d in decoded:
                    self._handle(session, d, out)
                if out.reschedule:  # in the same transaction: one commit from submit to assignment
                    jobs.write_pending(session)
                    self._schedule(session, out)
                jobs.commit(session)
                del loaded
            out.acks.extend(i for i in batch if isinstance(i, Inbound))
        except Exception:
            # One bad item must not sink the others: redo the batch one item at a time.
            log.exception("batch of %d failed; retrying one by one", len(batch))
            self._reload_fleet()
            out.publish.clear()
            out.notify.clear()
            out.answers.clear()
            for d in decoded:
                self._handle_alone(d, out)

    def _handle_alone(self, d: _Decoded, out: _Outbox) -> None:
        item = d.item
        one = _Outbox()
        try:
            with self._session() as session:
                self._handle(session, d, one)
                jobs.commit(session)
        except Exception as exc:
            log.exception("dropping an item that cannot be handled")
            self.metrics.dropped.labels("handler_error").inc()
            self._reload_fleet()
            one = _Outbox()
            if isinstance(item, Command):
                one.answers.append((item, None, exc))
        out.publish += one.publish
        out.notify |= one.notify
        out.answers += one.answers
        out.reschedule |= one.reschedule
        if isinstance(item, Inbound):
            out.acks.append(item)

    def _announce(self, out: _Outbox) -> None:
        for topic, payload in out.publish:
            self.mqtt.publish(topic, payload)
        for msg in out.acks:
            if msg.qos:
                self.mqtt.ack(msg.mid, msg.qos)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for answer in out.answers:
            by_loop.setdefault(answer[0].loop, []).append(answer)
        for loop, answers in by_loop.items():
            loop.call_soon_threadsafe(_settle, answers)
        for job_id in out.notify:
            self.watch.notify(job_id)

    # -- dispatching items -----------------------------------------------------------------

    def _decode(self, item) -> _Decoded:
        """Parse a device message (its topic once); commands pass through. A malformed message
        is logged, counted and comes back with no ``msg``."""
        if isinstance(item, Command):
            return _Decoded(item)
        try:
            device_id, kind = p.parse_device_topic(item.topic)
            msg, data = p.decode(kind, item.payload)
        except p.ProtocolError as exc:
            log.warning("dropped message on %s: %s", item.topic, exc)
            self.metrics.dropped.labels(exc.code).inc()
            return _Decoded(item)
        return _Decoded(item, device_id, msg, data)

    def _handle(self, session: Session, d: _Decoded, out: _Outbox) -> None:
        item, device_id, msg, data = d
        if isinstance(item, Command):
            handler = {"submit": self._on_submit, "cancel": self._on_cancel, "send": self._on_send,
                       "rollout": self._on_rollout}.get(
                item.kind, self._on_device_command)
            handler(session, item, out)
            return
        if msg is None:
            return
        if isinstance(msg, p.DeviceState):
            self._on_state(session, device_id, msg, out, retained=item.retained)
        elif isinstance(msg, p.Telemetry):
            self._on_telemetry(session, device_id, msg)
        elif isinstance(msg, p.DeviceRecord):
            self._on_record(session, device_id, msg)
        elif isinstance(msg, p.OtaReport):
            self.rollouts.on_report(session, device_id, msg, out.publish)
        elif type(msg) in self._events:
            job = jobs.current_attempt(session, job_id=msg.job_id, attempt=msg.attempt, device_id=device_id)
            if job is None:
                log.debug("ignored %s for %s attempt %s from %s (stale or repeated)", msg.kind, msg.job_id,
                          msg.attempt, device_id)
                return
            self._events[type(msg)](session, job, msg, data, out)

    # -- HTTP commands ---------------------------------------------------------------------

    def _on_submit(self, session: Session, cmd: Command, out: _Outbox) -> None:
        fleet = list(self._devices.values())
        servable = {d for v in fleet if v.gate(self.stats) is None for d in v.capabilities.dialects}
        specs: list[JobCreate] = [jobs.resolve(spec, servable) for spec in cmd.arg[0]]
        presets = {v for view in fleet for v in view.capabilities.voices}
        try:
            for i, spec in enumerate(specs):
                try:
                    jobs.check_voice(session, spec, presets)
                    jobs.check_servable(spec, fleet, self.stats, grace_s=self.settings.offline_grace_s)
                except jobs.Unservable as exc:
                    raise jobs.Unservable(f"jobs[{i}]: {exc}" if len(specs) > 1 else str(exc)) from None
            self._check_room(specs)
        except (jobs.Unservable, jobs.QueueFull) as exc:
            out.answers.append((cmd, None, exc))
            return
        rows = [jobs.add_job(session, spec=spec, max_attempts=self.settings.max_attempts, owner=cmd.arg[1])
                for spec in specs]
        for row in rows:
            self._queued[row["tier"]] += 1
        out.answers.append((cmd, rows, None))
        out.reschedule = True

    def _on_cancel(self, session: Session, cmd: Command, out: _Outbox) -> None:
        job = session.get(Job, cmd.arg)
        if job is not None and job.state not in TERMINAL_STATES:
            device_id, was_active = job.device_id, job.state in ACTIVE_STATES
            if job.state == "queued":
                self._queued[job.tier] -= 1
            jobs.cancel_job(session, job)
            if was_active:
                self.store.discard(job.id, job.attempt)
                cancel = p.JobCancel(job_id=job.id, attempt=job.attempt, reason="cancelled by client")
                out.publish.append((p.device_topic(device_id, "cancel"), p.encode(cancel)))
            self._ended(job, device_id if was_active else None, out)
        out.answers.append((cmd, job, None))

    def _on_send(self, session: Session, cmd: Command, out: _Outbox) -> None:
        device_id, kind, message = cmd.arg
        dev = session.get(Device, device_id)
        if dev is not None:
            out.publish.append((p.device_topic(device_id, kind), p.encode(message)))
        out.answers.append((cmd, dev, None))

    def _on_rollout(self, session: Session, cmd: Command, out: _Outbox) -> None:
        op, kw = cmd.arg
        try:  # a refused request has changed nothing: the checks come before the writes
            out.answers.append((cmd, self.rollouts.command(session, out.publish, op, **kw), None))
        except RolloutError as exc:
            out.answers.append((cmd, None, exc))

    def _on_device_command(self, session: Session, cmd: Command, out: _Outbox) -> None:
        dev = session.get(Device, cmd.arg)
        if dev is not None:
            dev.cordoned = cmd.kind != "uncordon"
            session.add(dev)
            if cmd.kind == "drain":
                self._take_back_unstarted(session, dev.id, out)
            self._update_view(dev)
            out.reschedule = True
            log.info("device %s: %s by an operator", dev.id, cmd.kind)
        out.answers.append((cmd, dev, None))

    def _take_back_unstarted(self, session: Session, device_id: str, out: _Outbox) -> None:
        """Jobs assigned to the device but not started go back to the queue (it is told to drop them)."""
        session.flush()
        for job in jobs.active_jobs_of(session, device_id=device_id):
            if job.state != "assigned":
                continue
            cancel = p.JobCancel(job_id=job.id, attempt=job.attempt, reason="device drained by an operator")
            out.publish.append((p.device_topic(device_id, "cancel"), p.encode(cancel)))
            self.store.discard(job.id, job.attempt)
            jobs.hand_back(session, job, reason="device drained by an operator")
            self._queued[job.tier] += 1
            self._ended(job, device_id, out)

    # -- device messages -------------------------------------------------------------------

    def _on_state(self, session: Session, device_id: str, st: p.DeviceState, out: _Outbox, *,
                  retained: bool = False) -> None:
        dev = session.get(Device, device_id) or Device(id=device_id)
        came_back = st.status == "online" and dev.status != "online"
        restarted = bool(st.boot_id) and bool(dev.boot_id) and dev.boot_id != st.boot_id
        dev.status = st.status
        dev.last_seen_at = p.now()
        if st.status != "offline":
            dev.role = st.role
            dev.engine = st.engine.model_dump() if st.engine else None
            dev.capabilities = st.capabilities.model_dump() if st.capabilities else None
            dev.max_concurrency = st.max_concurrency
            dev.agent_version = st.agent_version
            dev.boot_id = st.boot_id
            dev.image = st.image.model_dump() if st.image else None
        session.add(dev)
        if st.status == "offline" or restarted:
            self._take_back(session, device_id, "device went offline" if st.status == "offline"
                            else "device restarted", out)
        self._update_view(dev)
        self.rollouts.on_state(session, device_id, st, out.publish)
        if came_back:
            # A retained "online" is old news (it may predate a crash): wait for a live message.
            self._devices[device_id].confirmed = not retained
        out.reschedule = True
        log.info("device %s is %s", device_id, st.status)

    def _on_telemetry(self, session: Session, device_id: str, t: p.Telemetry) -> None:
        dev = session.get(Device, device_id)
        if dev is None:
            return  # telemetry before the first state message: nothing to attach it to
        dev.telemetry = t.model_dump(exclude={"v", "type", "device_id"})
        dev.last_seen_at = p.now()
        if dev.status == "offline":  # we timed it out, but it was only paused or cut off: it is back
            log.info("device %s is heard from again", device_id)
            dev.status = "online"
        session.add(dev)
        self._update_view(dev)
        view = self._devices.get(device_id)
        if view is not None:
            view.confirmed = True

    def _on_record(self, session: Session, device_id: str, rec: p.DeviceRecord) -> None:
        """Keep a replayed journal record once, whatever number of times it arrives."""
        if rec.device_id != device_id:
            log.warning("dropped a record from %s claiming to be %s", device_id, rec.device_id)
            self.metrics.dropped.labels("wrong_device").inc()
            return
        session.flush()  # a redelivery within this batch must see the first copy
        if session.get(DeviceRecord, rec.record_id) is None:
            session.add(DeviceRecord(id=rec.record_id, device_id=device_id, seq=rec.seq, record=rec.record,
                                     ts=rec.ts, body=rec.body))

    def _take_back(self, session: Session, device_id: str, reason: str, out: _Outbox) -> None:
        session.flush()  # the query must see this batch's own transitions (a done just before)
        for job in jobs.active_jobs_of(session, device_id=device_id):
            self._fail(session, job, code="device_lost", text=reason, retryable=True, out=out)

    # -- job events (for the live attempt only) --------------------------------------------

    def _on_started(self, session, job: Job, ev: p.JobStarted, data, out) -> None:
        jobs.mark_started(session, job, ts=ev.ts)
        out.notify.add(job.id)

    def _on_chunk(self, session, job: Job, ev: p.AudioChunk, data: bytes, out) -> None:
        self.store.append(job.id, job.attempt, ev.seq, data)
        if job.first_chunk_at is None:
            jobs.mark_first_chunk(session, job, sample_rate=ev.sample_rate)
            self.metrics.first_chunk.observe(job.first_chunk_at - job.created_at)
        out.notify.add(job.id)

    def _on_done(self, session, job: Job, ev: p.JobDone, data, out) -> None:
        try:
            stored = self.store.finalize(job.id, job.attempt, sample_rate=ev.sample_rate, chunks=ev.chunks,
                                         sha256=ev.sha256)
        except AudioIntegrityError as exc:
            self._fail(session, job, code="audio_incomplete", text=str(exc), retryable=True, out=out,
                       event_id=ev.event_id)
            return
        device_id = job.device_id
        job.sample_rate = ev.sample_rate
        jobs.pending(session, AudioArtifact).append(
            {"job_id": job.id, "key": stored.key, "sample_rate": ev.sample_rate, "samples": stored.samples,
             "bytes": stored.bytes, "sha256": stored.sha256, "engine": ev.engine.name, "model": ev.engine.model,
             "created_at": p.now()})
        rtt = None
        if ev.first_chunk_s is not None and job.first_chunk_at is not None and job.assigned_at is not None:
            rtt = (job.first_chunk_at - job.assigned_at) - ev.first_chunk_s
        self.stats.observe_done(device_id, lang=job.lang, chars=jobs.spoken_chars(job.text),
                                audio_s=ev.samples / ev.sample_rate, synth_s=ev.synth_s, rtt_s=rtt)
        jobs.mark_done(session, job, event_id=ev.event_id)
        self.metrics.total.observe(job.finished_at - job.created_at)
        self._ended(job, device_id, out)

    def _on_failed(self, session, job: Job, ev: p.JobFailed, data, out) -> None:
        self._fail(session, job, code=ev.error.code, text=ev.error.text, retryable=ev.retryable, out=out,
                   event_id=ev.event_id)

    def _on_returned(self, session, job: Job, ev: p.JobReturned, data, out) -> None:
        device_id = job.device_id
        self.store.discard(job.id, job.attempt)
        jobs.hand_back(session, job, reason=ev.reason, event_id=ev.event_id)
        self._queued[job.tier] += 1
        self._ended(job, device_id, out)

    def _fail(self, session, job: Job, *, code: str, text: str, retryable: bool, out: _Outbox,
              event_id: str | None = None) -> None:
        device_id = job.device_id
        self.store.discard(job.id, job.attempt)
        if device_id and code != "device_lost":  # a lost device is not an error rate
            self.stats.observe_outcome(device_id, ok=False)
        if jobs.fail_attempt(session, job, code=code, text=text, retryable=retryable, event_id=event_id):
            self._queued[job.tier] += 1
        self._ended(job, device_id, out)

    def _ended(self, job: Job, device_id: str | None, out: _Outbox) -> None:
        """An attempt ended: its device has a free slot, followers wake, final states count."""
        view = self._devices.get(device_id or "")
        if view is not None:
            view.inflight = max(0, view.inflight - 1)
            view.running.pop(job.id, None)
        self._drained += 1
        out.notify.add(job.id)
        out.reschedule = True
        if job.state in TERMINAL_STATES:
            self.metrics.finished.labels(job.state).inc()

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self, session: Session, out: _Outbox) -> None:
        """Bind queued jobs to free slots, in the caller's transaction (published after commit)."""
        out.reschedule = False
        views = list(self._devices.values())
        planner = Planner(views, self.stats, policy=self.settings.scheduler_policy,
                          prefer_edge=self.settings.prefer_edge, rr_cursor=self._rr)
        free = sum(planner.free.values())
        if free <= 0 or self.queued <= 0:
            return
        slots = sum(v.max_concurrency for v in views if planner.gates[v.id] is None)
        # Enough jobs to fill every free slot even when some wait for a busier, faster device.
        claimed = jobs.claim_queued(session, self.engine, limit=2 * slots + 16, starve_s=self.settings.batch_starve_s)
        for job in claimed:
            decision = planner.place(jobs.info_of(job))
            if decision.device_id is not None:
                self._assign(session, job, decision, out)
                free -= 1
            if free <= 0:
                break
        self._rr = planner.rr_cursor

    def _assign(self, session: Session, job: Job, decision, out: _Outbox) -> None:
        view = self._devices[decision.device_id]
        jobs.assign(session, job, device_id=view.id, lease_s=self.settings.lease_s, explain=decision.explain())
        view.inflight += 1
        view.running[job.id] = Running(job.id, job.assigned_at,
                                       self.stats.audio_s(job.lang, jobs.spoken_chars(job.text)), decision.expected_s)
        self._queued[job.tier] -= 1
        out.publish.append((p.device_topic(view.id, "job"), p.encode(self._assignment(session, job))))
        out.notify.add(job.id)

    @property
    def queued(self) -> int:
        return sum(self._queued.values())

    def _check_room(self, specs: list[JobCreate]) -> None:
        """QueueFull when these jobs would overflow their tier's queue or the whole queue."""
        wanted = {"interactive": 0, "batch": 0}
        for spec in specs:
            wanted[spec.tier] += 1
        bounds = {"interactive": self.settings.max_queued_interactive, "batch": self.settings.max_queued_batch}
        for tier, n in wanted.items():
            if n and self._queued[tier] + n > bounds[tier]:
                raise jobs.QueueFull(self._queued[tier], self._retry_after(self._queued[tier] + n - bounds[tier]),
                                     tier=tier)
        excess = self.queued + len(specs) - self.settings.max_queued_jobs
        if excess > 0:
            raise jobs.QueueFull(self.queued, self._retry_after(excess))

    def _retry_after(self, excess: int) -> int:
        """Seconds until the queue has drained ``excess`` jobs at the current drain rate."""
        return max(1, min(3600, math.ceil(excess / self.drain_rate))) if self.drain_rate > 0.01 else 60

    def _assignment(self, session: Session, job: Job) -> p.JobAssign:
        return p.JobAssign(job_id=job.id, attempt=job.attempt, text=job.text, lang=job.lang, dialect=job.dialect,
                           voice=job.voice, instruction=job.instruction, prompt=self._prompt(session, job.voice),
                           lease_s=self.settings.lease_s)

    def _prompt(self, session: Session, voice_id: str | None) -> p.VoicePrompt | None:
        """The prompt of a cloned voice, for the engine that clones it (presets need none)."""
        voice = session.get(Voice, voice_id) if voice_id else None
        if voice is None or voice.kind != "prompt" or not voice.audio_key:
            return None
        digest = self._prompt_hashes.get(voice.audio_key)
        if digest is None:  # of the file as served (voices are immutable: hash once)
            path = Path(self.settings.resolved_audio_dir()) / voice.audio_key
            digest = self._prompt_hashes[voice.audio_key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return p.VoicePrompt(voice_id=voice.id, transcript=voice.transcript or "", sha256=digest,
                             audio_url=self.signed_url(f"/v1/voices/{voice.id}/audio"))

    def signed_url(self, path: str) -> str:
        """An absolute URL an agent may GET ``path`` from without a token, for a limited time."""
        return f"{self.settings.api_url()}{path}?{signed_query(self.url_secret, path)}"

    def _update_view(self, dev: Device) -> None:
        if dev.capabilities is None:
            return
        view = self._devices.get(dev.id)
        caps = p.Capabilities.model_validate(dev.capabilities)
        if view is None:
            view = self._devices[dev.id] = DeviceView(id=dev.id, status=dev.status, capabilities=caps,
                                                      max_concurrency=dev.max_concurrency)
        view.status, view.capabilities, view.max_concurrency = dev.status, caps, dev.max_concurrency
        view.role, view.cordoned, view.telemetry = dev.role, dev.cordoned, dev.telemetry
        view.last_seen_at = dev.last_seen_at

    def _reload_fleet(self) -> None:
        """The database is the truth: rebuild the in-memory fleet, its work in flight and the queue
        depth from it (what only memory knows, whether a device has confirmed it is back, stays)."""
        confirmed = {d.id: d.confirmed for d in self._devices.values()}
        with self._session() as session:
            self._devices = {}
            for dev in session.exec(select(Device)).all():
                self._update_view(dev)
                if dev.id in self._devices:
                    self._devices[dev.id].confirmed = confirmed.get(dev.id, True)
            for job_id, device_id, assigned_at, lang, text, explain in jobs.active_assignments(session):
                view = self._devices.get(device_id)
                if view is not None:
                    view.inflight += 1
                    view.running[job_id] = Running(job_id, assigned_at or p.now(),
                                                   self.stats.audio_s(lang, jobs.spoken_chars(text)),
                                                   (explain or {}).get("expected_s"))
            self._queued = jobs.queue_depth(session)

    # -- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self, out: _Outbox) -> None:
        """Take back leases that ran out and devices that went silent; resync the fleet."""
        t = p.now()
        now_m = time.monotonic()
        rate = self._drained / max(now_m - self._drained_since, 1e-3)
        self.drain_rate = 0.7 * self.drain_rate + 0.3 * rate
        self._drained, self._drained_since = 0, now_m
        with self._session() as session:
            for job in jobs.expired_leases(session, at=t):
                out.publish.append((p.device_topic(job.device_id, "cancel"),
                                    p.encode(p.JobCancel(job_id=job.id, attempt=job.attempt, reason="lease expired"))))
                self._fail(session, job, code="lease_expired", retryable=True, out=out,
                           text=f"not finished within its {self.settings.lease_s:.0f}s lease")
            silent = session.exec(select(Device).where(
                Device.status != "offline", Device.last_seen_at < t - self.settings.heartbeat_timeout_s)).all()
            for dev in silent:
                log.warning("device %s missed its heartbeats; marking it offline", dev.id)
                dev.status = "offline"
                session.add(dev)
                self._take_back(session, dev.id, "device missed its heartbeats", out)
                out.reschedule = True
            self._hedge(session, out)
            jobs.commit(session)
        self._reload_fleet()
        if self.queued:
            out.reschedule = True

    def _tick_rollouts(self, out: _Outbox) -> None:
        """Rollouts move in a transaction of their own: a fault there is logged, never stops this loop."""
        publish: list[tuple[str, bytes]] = []
        try:
            with self._session() as session:
                self.rollouts.tick(session, publish)
                session.commit()
        except Exception:
            log.exception("rollout tick failed; trying again at the next housekeeping")
            return
        out.publish += publish

    def _hedge(self, session: Session, out: _Outbox) -> None:
        """Take a job off a device where it runs far longer than expected, when another device is
        expected to finish it sooner than the slow one will (the slow attempt is cancelled: a job
        has one live attempt, so this is a hand-off, not a race)."""
        factor = self.settings.hedge_factor
        if factor <= 0 or self.settings.scheduler_policy != "latency":
            return
        t = p.now()
        for view in list(self._devices.values()):
            for r in list(view.running.values()):
                elapsed = t - r.assigned_at
                if not r.expected_s or elapsed < max(self.settings.hedge_min_s, factor * r.expected_s):
                    continue
                job = session.get(Job, r.job_id)
                if job is None or job.device_id != view.id or job.state not in ACTIVE_STATES:
                    continue
                others = [v for v in self._devices.values() if v.id != view.id]
                alternative = Planner(others, self.stats, now=t).place(jobs.info_of(job))
                if alternative.expected_s is None or alternative.expected_s >= 0.5 * elapsed:
                    continue  # the slow device is still the better bet
                self.stats.observe_overrun(view.id, elapsed / max(r.audio_s, 1e-3))
                cancel = p.JobCancel(job_id=job.id, attempt=job.attempt, reason="hedged: running far over its estimate")
                out.publish.append((p.device_topic(view.id, "cancel"), p.encode(cancel)))
                self.store.discard(job.id, job.attempt)
                jobs.hand_back(session, job, reason=f"hedged after {elapsed:.1f}s (expected {r.expected_s:.1f}s) "
                                                   f"on {view.id}")
                self._queued[job.tier] += 1
                self.metrics.hedged.inc()
                self._ended(job, view.id, out)
