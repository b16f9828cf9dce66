"""The hub's offline journal: what it did on its own, kept on disk until the control plane has it.

Phrases spoken for the local API, reminders and Home Assistant are always journaled; telemetry only
while the broker is out of reach. Entries live in a SQLite file (atomic appends that survive a
power cut, and an order: ``seq``). When the link is up, ``replay`` publishes them oldest first as
``DeviceRecord`` events (QoS 1) and deletes each one once the broker has acknowledged it; the
control plane keeps a record id once, so a replay cut short and repeated is harmless (exactly once).

Bound: ``max_entries``. When full, the oldest telemetry goes first (it is the least valuable and
the next heartbeat supersedes it), then the oldest spoken phrases; every drop is counted and the
count is replayed as a record of its own, so the control plane knows what it did not get.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicefleet import protocol as p
from voicefleet.ids import now

DEFAULT_MAX_ENTRIES = 50_000


class Journal:
    def __init__(self, path: Path, max_entries: int = DEFAULT_MAX_ENTRIES):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS entry (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "record_id TEXT UNIQUE NOT NULL, record TEXT NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS dropped (record TEXT PRIMARY KEY, n INTEGER NOT NULL)")

    def append(self, record: str, ts: float, body: dict[str, Any], *, evict: bool = True) -> str:
        """Keep one record; returns its id. ``evict=False`` may exceed the bound by this one record."""
        record_id = uuid.uuid4().hex
        with self._lock:
            if evict:
                self._make_room()
            self._db.execute("INSERT INTO entry (record_id, record, ts, body) VALUES (?, ?, ?, ?)",
                             (record_id, record, ts, json.dumps(body, ensure_ascii=False)))
        return record_id

    def _make_room(self) -> None:
        count = self._db.execute("SELECT count(*) FROM entry").fetchone()[0]
        while count >= self.max_entries:
            victim = (self._db.execute("SELECT seq, record FROM entry WHERE record = 'telemetry' ORDER BY seq LIMIT 1")
                      .fetchone() or self._db.execute("SELECT seq, record FROM entry ORDER BY seq LIMIT 1").fetchone())
            self._db.execute("DELETE FROM entry WHERE seq = ?", (victim[0],))
            self._db.execute("INSERT INTO dropped (record, n) VALUES (?, 1) "
                             "ON CONFLICT(record) DO UPDATE SET n = n + 1", (victim[1],))
            count -= 1

    def pending(self, limit: int = 500) -> list[tuple[int, str, str, float, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, record_id, record, ts, body FROM entry ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [(seq, rid, rec, ts, json.loads(body)) for seq, rid, rec, ts, body in rows]

    def dropped(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT record, n FROM dropped").fetchall())

    def remove(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entry WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM entry").fetchone()[0]

    def replay(self, device_id: str, publish: Callable[[p.DeviceRecord], bool]) -> int:
        """Send what is pending, oldest first, while ``publish`` confirms delivery; returns how many."""
        self._report_drops()
        sent = 0
        while batch := self.pending():
            for seq, record_id, record, ts, body in batch:
                msg = p.DeviceRecord(device_id=device_id, record_id=record_id, seq=seq, record=record, ts=ts,
                                     body=body)
                if not publish(msg):
                    return sent  # the link went down: the rest waits for the next connection
                self.remove(seq)
                sent += 1
        return sent

    def _report_drops(self) -> None:
        drops = self.dropped()
        if drops:
            with self._lock:
                self._db.execute("DELETE FROM dropped")
            self.append("telemetry", now(), {"journal_dropped": drops}, evict=False)  # must not cost a phrase
