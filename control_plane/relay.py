"""Replicas tell each other what changed, through PostgreSQL LISTEN/NOTIFY: the console's events
(the EventBus behind GET /v1/events), job wake-ups (the JobWatch that wakes clients following a
job's audio) and token revocations (each replica caches checked tokens for a few seconds).
Whichever replica handled a device's message or a revocation, every replica hears of it.

What a replica publishes locally it also sends on the channel, after the commit that made it (the
bus and the watch are only ever told after a commit). Each replica listens on its own connection
and feeds what others sent into its own bus and watch; its own messages come back and are skipped.
A gap (the database restarted, the listening connection broke) may have lost messages, so the
replica publishes ``reset``: consoles reload what they show; audio followers poll anyway.

NOTIFY payloads are at most 8000 bytes: messages are packed into as few as fit. Sending happens on
the relay's own thread, so the dispatcher never waits for it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

import psycopg

from control_plane.dispatch import Dispatcher
from control_plane.events import EventBus
from control_plane.live import JobWatch
from control_plane.tokens import Tokens

log = logging.getLogger(__name__)
CHANNEL = "voicefleet_changes"
MAX_PAYLOAD = 7_900  # PostgreSQL's limit is 8000 bytes
RETRY_S = 1.0


class Relay:
    def __init__(self, url: str, replica: str, bus: EventBus, watch: JobWatch, tokens: Tokens | None = None,
                 dispatcher: Dispatcher | None = None):
        self.url = _libpq_url(url)
        self.replica = replica
        self.bus, self.watch, self.tokens, self.dispatcher = bus, watch, tokens, dispatcher
        self._outgoing: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in place (the tests wait on it)
        self._threads = [threading.Thread(target=self._send_loop, name="relay-send", daemon=True),
                         threading.Thread(target=self._listen_loop, name="relay-listen", daemon=True)]

    def start(self) -> None:
        self.bus.forward = lambda kind, data, owner: self._outgoing.put(("e", [kind, data, owner]))
        self.watch.forward = lambda job_id: self._outgoing.put(("j", job_id))
        if self.tokens is not None:
            self.tokens.on_revoke = lambda token_id: self._outgoing.put(("t", token_id))
        if self.dispatcher is not None:  # a follower's submissions, for the leader to schedule
            self.dispatcher.tell_leader = lambda counts: self._outgoing.put(("q", counts))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.bus.forward = self.watch.forward = None
        if self.tokens is not None:
            self.tokens.on_revoke = None
        self._stop.set()
        self._outgoing.put(None)
        for t in self._threads:
            t.join(timeout=5)

    # -- sending --------------------------------------------------------------------------

    def _send_loop(self) -> None:
        conn = None
        while not self._stop.is_set():
            batch = self._drain()
            if not batch:
                continue
            for payload in _pack(self.replica, batch):
                try:
                    conn = conn or psycopg.connect(self.url, autocommit=True)
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                except psycopg.Error as exc:  # lost for the other replicas: they reset on their own gap
                    log.warning("could not relay %d changes to the other replicas: %s", len(batch), exc)
                    conn = _close(conn)
                    self._stop.wait(RETRY_S)
        _close(conn)

    def _drain(self) -> list[tuple[str, Any]]:
        """What is waiting to be sent: blocks for the first item, then takes whatever else is queued."""
        first = self._outgoing.get()
        batch = [first] if first is not None else []
        while batch:
            try:
                item = self._outgoing.get_nowait()
            except queue.Empty:
                break
            if item is None:
                break
            batch.append(item)
        return batch

    # -- listening ------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        gap = False  # a connection broke: what was sent meanwhile is lost
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if gap:
                        self.bus.publish("reset", {"reason": "this replica lost touch with the others for a "
                                                   "while: reload"}, remote=True)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=64):
                            self._deliver(note.payload)
            except psycopg.Error as exc:
                log.warning("relay from the other replicas interrupted (%s); retrying", exc)
            self.listening.clear()
            gap = True
            self._stop.wait(RETRY_S)

    def _deliver(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message["r"] == self.replica:
                return
            for kind, data, owner in message.get("e", ()):
                self.bus.publish(kind, data, owner=owner, remote=True)
            for job_id in message.get("j", ()):
                self.watch.notify(job_id, remote=True)
            for token_id in message.get("t", ()):
                if self.tokens is not None:
                    self.tokens.forget(token_id)
            for counts in message.get("q", ()):
                if self.dispatcher is not None and self.dispatcher.running:
                    self.dispatcher.queued_elsewhere(counts)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("dropped a relayed message that is not ours: %s", exc)


def _pack(replica: str, batch: list[tuple[str, Any]]) -> list[str]:
    """The batch as NOTIFY payloads, each under MAX_PAYLOAD bytes; a job woken twice is sent once
    (an item too big alone is dropped, with a warning)."""
    payloads: list[str] = []
    current: dict[str, list] = {"e": [], "j": [], "t": [], "q": []}
    size, woken = 0, set()
    budget = MAX_PAYLOAD - len(json.dumps({"r": replica, "e": [], "j": [], "t": [], "q": []},
                                          ensure_ascii=False).encode())
    for tag, item in batch:
        if tag == "j":
            if item in woken:
                continue
            woken.add(item)
        item_size = len(json.dumps(item, ensure_ascii=False).encode()) + 1
        if size + item_size > budget and size:
            payloads.append(json.dumps({"r": replica, **current}, ensure_ascii=False))
            current, size = {"e": [], "j": [], "t": [], "q": []}, 0
        if item_size > budget:
            log.warning("a change too large to relay was left out (%d bytes)", item_size)
            continue
        current[tag].append(item)
        size += item_size
    if size:
        payloads.append(json.dumps({"r": replica, **current}, ensure_ascii=False))
    return payloads


def _libpq_url(url: str) -> str:
    """SQLAlchemy's ``postgresql+psycopg://`` as libpq's ``postgresql://``."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def _close(conn) -> None:
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass
