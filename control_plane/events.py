"""What changed, for the operator console: a numbered stream of small events (``job``, ``device``,
``rollout``, ``alarm``) that GET /v1/events serves (control_plane/api/routes/events.py).

The dispatcher stages an event where it changes a job, a device or a rollout (``stage`` and the
helpers below); the event goes out on the bus only once that transaction has committed, so a
client that re-fetches what an event names sees the change, and a transaction that rolls back
announces nothing.

The bus is in memory, one per control plane: ``publish`` from any thread, ``subscribe`` from an
asyncio loop, ids that only grow, the last ``size`` events kept so that a client that reconnects
gets what it missed. With several replicas on PostgreSQL, control_plane/relay.py carries each
replica's events to the others' buses, so every stream sees every change. Ids are each replica's
own: a client that resumes on another replica (its id was never given out there) is told to reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import Session

from voicefleet.ids import now

log = logging.getLogger(__name__)
RING_SIZE = 10_000


class Event:
    """One change: ``id`` (numbered by the bus), ``kind``, a small JSON-able ``data`` dict, and the
    subject that owns it (a job's submitter; None: not owned)."""

    __slots__ = ("_frame", "data", "id", "kind", "owner")

    def __init__(self, id: int, kind: str, data: dict[str, Any], owner: str | None = None):
        self.id, self.kind, self.data, self.owner = id, kind, data, owner
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        """As a server-sent event; encoded once, on first use (never on the dispatcher's thread)."""
        if self._frame is None:
            data = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
            self._frame = f"id: {self.id}\nevent: {self.kind}\ndata: {data}\n\n".encode()
        return self._frame

    def __repr__(self) -> str:
        return f"Event({self.id}, {self.kind!r}, {self.data!r})"


class EventBus:
    """Numbered events in a ring of the last ``size``; ids start at ``first_id`` (default: the
    microseconds since the epoch, so that the ids of a restarted control plane are all newer than
    any its predecessor gave out and a client resuming from one of those is told to reset)."""

    def __init__(self, size: int = RING_SIZE, *, first_id: int | None = None):
        self._lock = threading.Lock()
        self._ring: deque[Event] = deque(maxlen=size)
        self._last = (time.time_ns() // 1000 if first_id is None else first_id) - 1
        self._subscribers: set[Subscription] = set()
        self._closed = False
        # Told of each event published here (not of those relayed from other replicas): control_plane/relay.py
        self.forward: Callable[[str, dict[str, Any], str | None], None] | None = None

    @property
    def last_id(self) -> int:
        """The newest id given out (one less than the first, before any)."""
        return self._last

    def publish(self, kind: str, data: dict[str, Any], *, owner: str | None = None, remote: bool = False) -> int:
        """Number and keep the event, and wake the subscribers; any thread. Never raises. ``remote``:
        it came from another replica (so it is not forwarded back)."""
        if self.forward is not None and not remote:
            self.forward(kind, data, owner)
        with self._lock:
            self._last += 1
            self._ring.append(Event(self._last, kind, data, owner))
            woken = [s for s in self._subscribers if not s._signalled]
            for s in woken:
                s._signalled = True
        for s in woken:
            s._wake()
        return self._last

    def subscribe(self, after: int | None = None) -> Subscription:
        """Events after id ``after`` (None: from now on); call on the subscriber's event loop. When
        ``after`` is no longer in the ring (or was never given out here), the subscription starts with
        a ``reset`` event: the caller missed changes and must reload what it shows."""
        sub = Subscription(self, asyncio.get_running_loop())
        with self._lock:
            sub.cursor = self._last if after is None else after
            self._subscribers.add(sub)
            if self._closed:
                sub.closed = True
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscription (the server is going away): their streams finish promptly."""
        with self._lock:
            self._closed = True
            subs = list(self._subscribers)
            for s in subs:
                s.closed = True
        for s in subs:
            s._wake()

    def _since(self, sub: Subscription) -> list[Event]:
        """What ``sub`` has not seen; a ``reset`` (at the newest id) when part of it is gone. Holds the lock."""
        missed = self._last - sub.cursor
        if missed <= 0:
            if missed == 0:
                return []
            return self._reset(sub, "that event id was never given out here (the control plane restarted)")
        if missed > len(self._ring):
            return self._reset(sub, "events after that id are no longer kept")
        sub.cursor = self._last
        return list(islice(reversed(self._ring), missed))[::-1]

    def _reset(self, sub: Subscription, why: str) -> list[Event]:
        sub.cursor = self._last
        return [Event(self._last, "reset", {"reason": why})]


class Subscription:
    """One listener's place in the bus: ``cursor`` is the last id it was given."""

    def __init__(self, bus: EventBus, loop: asyncio.AbstractEventLoop):
        self._bus = bus
        self._loop = loop
        self._ready = asyncio.Event()
        self._signalled = False  # a wake-up is on its way (set and cleared under the bus's lock)
        self.cursor = 0
        self.closed = False

    async def next(self, timeout: float) -> list[Event]:
        """The events since the last call, waiting up to ``timeout`` seconds for one ([]: none came,
        or the bus closed: see ``closed``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._ready.clear()  # before reading: a publish after the read wakes the wait below
            with self._bus._lock:
                self._signalled = False
                events = [] if self.closed else self._bus._since(self)
            remaining = deadline - loop.time()
            if events or self.closed or remaining <= 0:
                return events
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                return []

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # its loop has closed: the stream is gone (it unsubscribes on its way out)
            pass

    def close(self) -> None:
        self._bus.unsubscribe(self)


# -- staging: events published once the transaction that made them commits ---------------------

_STAGED = "staged_events"


def attach(session: Session, bus: EventBus) -> Session:
    """Events staged in ``session`` go out on ``bus`` after each commit; a rollback drops them."""
    session.info[_STAGED] = (bus, [])
    sa_event.listen(session, "after_commit", _publish_staged)
    sa_event.listen(session, "after_soft_rollback", _drop_staged)
    return session


def stage(session: Session, kind: str, data: dict[str, Any], *, owner: str | None = None) -> None:
    """Publish after the commit (nothing, in a session with no bus attached: a tool's or a test's)."""
    staged = session.info.get(_STAGED)
    if staged is not None:
        staged[1].append((kind, data, owner))


def _publish_staged(session: Session) -> None:
    bus, events = session.info[_STAGED]
    session.info[_STAGED] = (bus, [])
    try:
        for kind, data, owner in events:
            bus.publish(kind, data, owner=owner)
    except Exception:  # the commit stands: an error here must not look like a failed transaction
        log.exception("could not publish %d events", len(events))


def _drop_staged(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:
        session.info[_STAGED][1].clear()


# -- the event kinds ------------------------------------------------------------------------------


def job_changed(session: Session, job: Any) -> None:
    """``job``: its state, where it runs and what speaks it. ``job`` is a Job or a new job's row."""
    get = job.get if isinstance(job, dict) else partial(getattr, job)
    device_id, spoken_by = get("device_id"), get("spoken_by") or {}
    state = get("state")
    stage(session, "job", {"id": get("id"), "state": getattr(state, "value", state), "device_id": device_id,
                           "dialect": get("dialect"), "lang": get("lang"),
                           "engine": spoken_by.get("engine") if device_id else None,
                           "error_code": get("error_code"), "at": now()}, owner=get("owner"))


def device_changed(session: Session, device: Any, *, gate: str | None, why: str = "", alarm: bool = True) -> None:
    """``device``: its status and the scheduler's gate (why it takes no new jobs; None: it takes
    them). Going offline also raises an ``alarm`` (``why``: what took it away), unless ``alarm`` is
    false (a device whose login was revoked: decommissioned on purpose)."""
    t = now()
    stage(session, "device", {"id": device.id, "status": device.status, "gate": gate, "at": t})
    if device.status == "offline" and alarm:
        text = f"{device.role or 'device'} {device.id} went offline" + (f": {why}" if why else "")
        stage(session, "alarm", {"kind": "device_offline", "subject": device.id, "text": text, "at": t})


def rollout_changed(session: Session, rollout: Any, what: str, device_id: str | None = None) -> None:
    """``rollout``: its state and phase (0: the canary, n: wave n) after ``what`` happened to it
    (one of its RolloutEvent kinds; ``device_id`` when it concerns one target)."""
    stage(session, "rollout", {"id": rollout.id, "state": rollout.state, "phase": rollout.phase, "event": what,
                               "device_id": device_id, "at": now()})


def rollout_halted(session: Session, rollout: Any, reason: str | None) -> None:
    stage(session, "alarm", {"kind": "rollout_halted", "subject": rollout.id,
                             "text": f"rollout {rollout.id} of {rollout.model_id} {rollout.version} halted: "
                                     f"{reason or 'no reason given'}", "at": now()})
