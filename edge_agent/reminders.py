"""Spoken reminders that keep working with no network: a JSON file and one scheduler thread.

Kinds: one-off (``at``, unix time), every ``every_s`` seconds (first due at ``at`` if given, else
one interval after creation), or daily at ``time`` "HH:MM" in the hub's local time zone.

Firing policy (at most once per due time):

- Each reminder stores ``next_due``. When it is reached the store first advances ``next_due`` (and
  records ``last_fired_at``) on disk, and only then calls ``speak``. A crash or restart therefore
  never repeats a due time; a crash in the middle of speaking loses that one reminder instead.
- A due time missed while the hub was down (or busy) is caught up only if it is at most
  ``catch_up_s`` late (default 600 s = 10 minutes): "take your pills" an hour late is worse than
  nothing. Older ones are skipped, counted in ``missed`` and recorded in ``last_missed_at``.
- Recurring reminders then jump to their next due time strictly after now: several missed
  occurrences produce at most one catch-up, never a burst.
- A one-off reminder stays listed after it fired (``next_due`` null) until it is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time as _time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from voicefleet.files import write_atomic

log = logging.getLogger(__name__)
DEFAULT_CATCH_UP_S = 600.0
MAX_TEXT_CHARS = 500
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass
class Reminder:
    id: str
    text: str
    at: float | None = None  # one-off due time, or the first due time of an every_s reminder
    every_s: float | None = None
    time: str | None = None  # "HH:MM" daily, local time
    created_at: float = 0.0
    next_due: float | None = None  # None: a one-off that is done
    last_fired_at: float | None = None
    last_missed_at: float | None = None
    fired: int = 0
    missed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def next_daily(hhmm: str, after: float) -> float:
    """The first local HH:MM strictly after ``after``; mktime resolves DST for each day."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    day = _time.localtime(after)
    for offset in range(3):  # today, tomorrow, or the day after when a DST jump ate the slot
        due = _time.mktime((day.tm_year, day.tm_mon, day.tm_mday + offset, hour, minute, 0, 0, 0, -1))
        if due > after:
            return due
    raise AssertionError("unreachable: a daily time always recurs within two days")


def next_after(rem: Reminder, now: float) -> float | None:
    """The reminder's first due time strictly after ``now`` (None for a one-off: it is done)."""
    if rem.time:
        return next_daily(rem.time, now)
    if rem.every_s:
        anchor = rem.at if rem.at is not None else rem.created_at + rem.every_s
        if anchor > now:
            return anchor
        return anchor + (int((now - anchor) // rem.every_s) + 1) * rem.every_s
    return None


def validate(text: object, at: object, every_s: object, time: object) -> str | None:
    """What is wrong with a new reminder, as a sentence for the caller, or None."""
    if not isinstance(text, str) or not text.strip():
        return "text must be a non-empty string"
    if len(text) > MAX_TEXT_CHARS:
        return f"text is {len(text)} characters; a reminder holds at most {MAX_TEXT_CHARS}"
    if sum(x is not None for x in (every_s, time)) > 1:
        return "give either every_s (an interval) or time (daily HH:MM), not both"
    if at is None and every_s is None and time is None:
        return "give at (unix time) for a one-off, every_s for an interval, or time 'HH:MM' for daily"
    for name, value in (("at", at), ("every_s", every_s)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"{name} must be a number of seconds"
    if every_s is not None and every_s <= 0:
        return "every_s must be greater than 0"
    if time is not None and (not isinstance(time, str) or not _HHMM.match(time)):
        return "time must be 'HH:MM' on a 24-hour clock, such as '07:30'"
    return None


class ReminderStore:
    """All reminders in one JSON file, rewritten atomically (``write_atomic``) on each change."""

    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = _time.time):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Event()  # wakes the scheduler when the next due time may move
        self._items: dict[str, Reminder] = self._load()

    def add(self, text: str, *, at: float | None = None, every_s: float | None = None,
            time: str | None = None, id: str | None = None) -> Reminder:
        """Raises ValueError with a sentence saying what to fix. ``id`` (the control plane's) replaces
        a reminder of that id, so a command delivered twice leaves one reminder."""
        problem = validate(text, at, every_s, time)
        if problem:
            raise ValueError(problem)
        now = self.clock()
        rem = Reminder(id=id or uuid.uuid4().hex[:12], text=text.strip(), at=at, every_s=every_s, time=time,
                       created_at=now)
        rem.next_due = at if (at is not None and not time) else next_after(rem, now)
        with self._lock:
            self._items[rem.id] = rem
            self._save()
        self._changed.set()
        return rem

    def list(self) -> list[Reminder]:
        with self._lock:
            return sorted(self._items.values(), key=lambda r: (r.next_due is None, r.next_due or 0, r.created_at))

    def get(self, reminder_id: str) -> Reminder | None:
        with self._lock:
            return self._items.get(reminder_id)

    def delete(self, reminder_id: str) -> bool:
        with self._lock:
            if self._items.pop(reminder_id, None) is None:
                return False
            self._save()
        self._changed.set()
        return True

    def take_due(self, now: float, catch_up_s: float) -> list[Reminder]:
        """Advance every reminder due by ``now`` and persist that; return those to speak now."""
        to_fire, changed = [], False
        with self._lock:
            for rem in self._items.values():
                if rem.next_due is None or rem.next_due > now:
                    continue
                changed = True
                if now - rem.next_due <= catch_up_s:
                    rem.last_fired_at, rem.fired = now, rem.fired + 1
                    to_fire.append(Reminder(**asdict(rem)))
                else:
                    log.warning("reminder %s skipped: due %.0f s ago, more than the %.0f s catch-up window",
                                rem.id, now - rem.next_due, catch_up_s)
                    rem.last_missed_at, rem.missed = now, rem.missed + 1
                rem.next_due = next_after(rem, now)
            if changed:
                self._save()  # before speaking: a restart must not fire these due times again
        return to_fire

    def next_due(self) -> float | None:
        with self._lock:
            dues = [r.next_due for r in self._items.values() if r.next_due is not None]
        return min(dues, default=None)

    def _load(self) -> dict[str, Reminder]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        known = {f.name for f in fields(Reminder)}
        items = (Reminder(**{k: v for k, v in r.items() if k in known}) for r in raw.get("reminders", []))
        return {r.id: r for r in items}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"version": 1, "reminders": [r.to_json() for r in self._items.values()]},
                                           ensure_ascii=False, indent=1))


class ReminderScheduler:
    """One daemon thread: sleeps until the next due time (or a change, or ``poll_s``), then fires."""

    def __init__(self, store: ReminderStore, speak: Callable[[str], object], clock: Callable[[], float] = _time.time,
                 *, catch_up_s: float = DEFAULT_CATCH_UP_S, poll_s: float = 1.0):
        self.store = store
        self.speak = speak
        self.clock = clock
        self.catch_up_s = catch_up_s
        self.poll_s = poll_s  # bounds the sleep: wall-clock jumps (NTP after boot) are noticed soon
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="reminders", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.store._changed.set()
        if self._thread:
            self._thread.join(timeout)

    def run_due(self) -> list[Reminder]:
        """Fire whatever is due now (the thread's step; tests call it with a fake clock)."""
        fired = self.store.take_due(self.clock(), self.catch_up_s)
        for rem in fired:
            try:
                self.speak(rem.text)
            except Exception:  # one failing reminder must not stop the others
                log.exception("reminder %s could not be spoken", rem.id)
        return fired

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            due = self.store.next_due()
            wait = self.poll_s if due is None else min(self.poll_s, max(0.0, due - self.clock()))
            self.store._changed.wait(wait)
            self.store._changed.clear()
