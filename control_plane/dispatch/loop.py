"""The control plane's single writer: one thread that records submissions and cancels, turns
device messages into database transitions, and hands queued jobs to devices with free slots.

Everything arrives on one bounded inbox (HTTP handlers and the MQTT callback only enqueue) and
is handled in batches, one transaction a batch (group commit). A command is answered, and a
device message acked to the broker, only after its batch committed, so a crash loses nothing
accepted (the broker redelivers what was not acked). Announcements (assignments, cancels,
wake-ups of HTTP followers) go out only after the commit that they announce.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from control_plane import jobs
from control_plane.core.db import DatabaseUnavailable, database_up
from control_plane.dispatch import device_events, requests
from control_plane.dispatch.commands import Ask, Command, Submit
from control_plane.dispatch.context import Context
from control_plane.dispatch.device_events import Decoded
from control_plane.dispatch.fleet import Fleet
from control_plane.dispatch.housekeeping import housekeeping, tick_rollouts
from control_plane.dispatch.inbox import Inbox
from control_plane.dispatch.outbox import Outbox, announce
from control_plane.dispatch.placement import schedule
from control_plane.dispatch.snapshot import FleetSnapshot
from control_plane.fencing import LostLeadership
from voicefleet import protocol as p
from voicefleet.mqtt import Inbound, MqttClient

log = logging.getLogger(__name__)
HOUSEKEEPING_S = 1.0
OUTAGE_RETRY_S = 0.5  # how often a turn that hit a database outage is tried again


class Dispatcher:
    """Owns the loop; ``ctx`` (settings, stores, rollouts, the fleet) and the MQTT client, whose
    messages arrive on ``inbox``, are built at start-up and passed in."""

    def __init__(self, ctx: Context, *, mqtt: MqttClient, inbox: Inbox):
        self.ctx = ctx
        self.mqtt = mqtt
        self.inbox = inbox
        ctx.link_age = mqtt.link_age
        self.snapshot = FleetSnapshot()  # replaced, never changed: routes read it from any thread
        self._outage_since: float | None = None  # monotonic time the database stopped answering
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._elsewhere: Counter[str] = Counter()  # jobs followers queued, not yet in fleet.queued
        self._elsewhere_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._submits: Inbox | None = None  # a follower's submissions, written by their own thread
        self._submits_lock = threading.Lock()
        self.tell_leader: Callable[[dict[str, int]], None] | None = None  # a follower's: control_plane/relay.py

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, mqtt_timeout_s: float = 10.0) -> None:
        self.ctx.store.clear_partials()
        self.ctx.reload_fleet()
        self.snapshot = self.ctx.fleet.snapshot()
        self._thread.start()
        self.mqtt.start(mqtt_timeout_s)
        self.inbox.wake()

    def refresh_view(self) -> None:
        """A follower's fleet view, from the database (the leader's dispatcher keeps its own live):
        built aside and swapped in whole, so a submission reading the old one never sees it half-made."""
        with self._refresh_lock:
            fresh = Fleet()
            fresh.stats = self.ctx.fleet.stats  # what was learned stays
            with self.ctx.session() as session:
                fresh.reload(session)
            self.ctx.fleet = fresh
            self.snapshot = fresh.snapshot()

    def stop(self) -> None:
        if not self._thread.is_alive():  # a follower's: never started
            return
        self._stop.set()
        self.inbox.wake()
        self._thread.join(timeout=10)
        self.mqtt.stop()
        if self.ctx.leader is not None:
            self.ctx.leader.close()  # another replica leads from its next check

    @property
    def running(self) -> bool:
        """Is the dispatcher running here (this replica leads)?"""
        return self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self.mqtt.connected.is_set()

    async def ask(self, command: Command) -> Any:
        """Run ``command`` on the dispatcher thread; returns its answer once its batch committed
        (raises what the command refused with, or InboxFull). On a follower replica (no dispatcher
        here) submissions are written by a thread of its own, many to a transaction, and the leader
        told of them; every other change reaches the leader by HTTP (control_plane/api/forward.py)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.running:
            self.inbox.offer(Ask(command, loop, future))
        elif isinstance(command, Submit):
            self._follower_submits().offer(Ask(command, loop, future))
        else:
            raise RuntimeError(f"{type(command).__name__} must run on the leader's dispatcher")
        return await future

    def _follower_submits(self) -> Inbox:
        with self._submits_lock:
            if self._submits is None:
                self._submits = Inbox()
                threading.Thread(target=self._submit_loop, name="submits", daemon=True).start()
        return self._submits

    def _submit_loop(self) -> None:
        while True:  # a daemon: it lives as long as the follower (and idles once this replica leads)
            batch, _ = self._submits.drain(timeout=0.25)
            asks = [item for item in batch if isinstance(item, Ask)]
            if asks:
                self._submit_here(asks)

    def _submit_here(self, asks: list[Ask]) -> None:
        """A follower's submissions: the same checks against its fleet view (reloaded every second, and
        again before refusals that a newer view could lift), one transaction, then the leader is told
        how many jobs joined each tier's queue."""
        out = self._try_submit_here(asks)
        refused = [ask for ask, _, error in out.answers if isinstance(error, jobs.Unservable)]
        if refused:
            self.refresh_view()  # a device that registered or came back within the last second
            out.answers = [a for a in out.answers if a[0] not in refused]
            out.merge(self._try_submit_here(refused))
        announce(out, self.mqtt, self.ctx.watch)
        queued = Counter(row["tier"] for _, rows, error in out.answers if error is None for row in rows)
        if queued and self.tell_leader is not None:
            self.tell_leader(dict(queued))

    def _try_submit_here(self, asks: list[Ask]) -> Outbox:
        out = Outbox()
        try:
            with self.ctx.session() as session:
                for ask in asks:
                    requests.handle(self.ctx, session, ask, out)
                jobs.commit(session)
            return out
        except Exception as exc:
            out.forget()
            try:
                self._raise_if_down(exc)
            except DatabaseUnavailable as down:
                for ask in asks:
                    out.answer(ask, error=down)
                return out
            if len(asks) == 1:
                log.exception("a submission could not be written")
                out.answer(asks[0], error=exc)
                return out
        for ask in asks:  # one bad submission must not sink the others
            out.merge(self._try_submit_here([ask]))
        return out

    def queued_elsewhere(self, counts: dict[str, int]) -> None:
        """On the leader: a follower queued these jobs (by tier); they are scheduled at the next turn."""
        with self._elsewhere_lock:
            self._elsewhere.update(counts)
        self.inbox.wake()

    def _take_queued_elsewhere(self) -> None:
        with self._elsewhere_lock:
            counts, self._elsewhere = self._elsewhere, Counter()
        for tier, n in counts.items():
            self.ctx.fleet.queued[tier] += n

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except LostLeadership as exc:  # a transaction found another replica's term begun
            log.error("%s: stopping the dispatcher; this replica restarts as a follower", exc)
            self.mqtt.stop()  # at once: no reconnect may take the broker's session back from the new leader
            os.kill(os.getpid(), signal.SIGTERM)

    def _loop(self) -> None:
        held: list = []  # device messages whose batch could not commit: never acked, handled again first
        next_housekeeping = time.monotonic()
        while not self._stop.is_set():
            batch, woken = self.inbox.drain(timeout=0.25)
            self._take_queued_elsewhere()
            batch, held = held + batch, []
            housekept = time.monotonic() >= next_housekeeping
            # Two outboxes: what the batch committed goes out even if the clock's work after it
            # meets an outage; what that work did not commit never goes out.
            out, later = Outbox(reschedule=woken or self._outage_since is not None), Outbox()
            try:
                self._resync_after_outage(len(batch))
                if batch:
                    self._handle_batch(batch, out)
                later.reschedule, out.reschedule = out.reschedule, False
                self._clockwork(later, housekept)
            except DatabaseUnavailable as exc:
                held = self._hold(batch[out.handled:], exc, out)
                self._stop.wait(OUTAGE_RETRY_S)
                continue
            if housekept:
                next_housekeeping = time.monotonic() + HOUSEKEEPING_S
            if batch or housekept or later.publish or later.notify:
                self.snapshot = self.ctx.fleet.snapshot()  # before answers go out: a route sees what it caused
            out.merge(later)
            announce(out, self.mqtt, self.ctx.watch)

    def _resync_after_outage(self, waiting: int) -> None:
        """Back from an outage: what memory tracked meanwhile may be off; the database is the truth."""
        if self._outage_since is not None:
            self._guard(self.ctx.reload_fleet)
            log.warning("the database answers again after %.1fs; handling the %d messages held meanwhile",
                        time.monotonic() - self._outage_since, waiting)
            self._outage_since = None

    def _clockwork(self, out: Outbox, housekept: bool) -> None:
        """After the batch: the clock's work and a scheduling pass, each in its own transaction."""
        ctx = self.ctx
        if housekept:
            self._guard(housekeeping, ctx, out)
        if housekept or ctx.rollouts.due:  # soaks end with no message; a report moves a rollout at once
            tick_rollouts(ctx, out)
        if out.reschedule:
            self._guard(self._schedule, out)

    def _schedule(self, out: Outbox) -> None:
        with self.ctx.session() as session:
            schedule(self.ctx, session, out)
            jobs.commit(session)

    def _guard(self, work, *args) -> None:
        """Run clock or scheduling work: a database outage stops the turn; any other fault is logged
        and the loop goes on (the next tick tries again)."""
        try:
            work(*args)
        except Exception as exc:
            self._raise_if_down(exc)
            log.exception("%s failed; trying again at the next turn", getattr(work, "__name__", work))

    def _raise_if_down(self, exc: BaseException) -> None:
        if isinstance(exc, DatabaseUnavailable):
            raise exc
        if isinstance(exc, DBAPIError) and not database_up(self.ctx.engine):
            raise DatabaseUnavailable(type(exc.orig or exc).__name__) from exc

    def _hold(self, unhandled: list, exc: DatabaseUnavailable, out: Outbox) -> list:
        """Announce what did commit (``out``), keep the device messages that did not (unacked: the
        broker keeps them too) and refuse the commands that did not at once with a 503 that says
        nothing was written."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.error("the database is not answering: holding device messages unacknowledged until it is back")
        held = []
        for item in unhandled:
            if isinstance(item, Ask):
                out.answer(item, error=exc)
            else:
                held.append(item)
        announce(out, self.mqtt, self.ctx.watch)
        return held

    def _handle_batch(self, batch: list, out: Outbox) -> None:
        ctx = self.ctx
        # Decoded once: a retry below must not count drops twice.
        decoded = [device_events.decode(ctx, i) if isinstance(i, Inbound) else i for i in batch]
        try:
            with ctx.session() as session:
                # Held in a local: the session's identity map is weak, and the handlers' gets must hit it.
                loaded = jobs.jobs_by_id(session, {d.msg.job_id for d in decoded if isinstance(d, Decoded)
                                                   and isinstance(d.msg, p.JobEventBase)})
                for d in decoded:
                    self._handle(session, d, out)
                if out.reschedule:  # in the same transaction: one commit from submit to assignment
                    jobs.write_pending(session)
                    schedule(ctx, session, out)
                jobs.commit(session)
                del loaded
            out.acks.extend(i for i in batch if isinstance(i, Inbound))
            out.handled = len(batch)
        except Exception as exc:
            out.forget()  # the transaction rolled back: nothing it would have announced may go out
            self._raise_if_down(exc)
            # One bad item must not sink the others: redo the batch one item at a time.
            log.exception("batch of %d failed; retrying one by one", len(batch))
            ctx.reload_fleet()
            for d in decoded:
                self._handle_alone(d, out)

    def _handle(self, session, d: Decoded | Ask, out: Outbox) -> None:
        if isinstance(d, Ask):
            requests.handle(self.ctx, session, d, out)
        else:
            device_events.handle(self.ctx, session, d, out)

    def _handle_alone(self, d: Decoded | Ask, out: Outbox) -> None:
        ctx = self.ctx
        one = Outbox()
        try:
            with ctx.session() as session:
                self._handle(session, d, one)
                jobs.commit(session)
        except Exception as exc:
            self._raise_if_down(exc)
            log.exception("dropping an item that cannot be handled")
            ctx.metrics.dropped.labels("handler_error").inc()
            ctx.reload_fleet()
            one = Outbox()
            if isinstance(d, Ask):
                one.answer(d, error=exc)
        out.merge(one)
        if isinstance(d, Decoded):
            out.acks.append(d.item)
        out.handled += 1
