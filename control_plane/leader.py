"""Which replica runs the singletons (lease expiry, silent devices, hedging, rollout ticks): the one
holding a PostgreSQL session advisory lock. The lock lives on a connection of its own, so it goes
with that connection: a replica that dies (SIGKILL included) or loses the database gives it up at
once, and another replica takes it at its next check (each housekeeping tick, every second).
On SQLite there is one control plane by construction, and it always leads."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from control_plane.core.db import is_postgres

log = logging.getLogger(__name__)
# The advisory lock's key: any constant no other code of ours takes (b"vfleader" as an int64).
LOCK_KEY = int.from_bytes(b"vfleader", "big") - 2**63
CHECK_EVERY_S = 1.0  # how stale an answer may be: takeover and loss are noticed within this


class Leadership:
    def __init__(self, engine: Engine, replica: str):
        self.engine = engine
        self.replica = replica
        self._conn: Connection | None = None
        self.leading = not is_postgres(engine)
        self.taken_elsewhere = False  # the last try found another replica holding the lock
        self._checked = float("-inf")
        self._lock = threading.Lock()  # the roles loop and the dispatcher's housekeeping both ask

    def check(self) -> bool:
        """Do we lead now? Keeps the lock while its connection answers; else tries to take it (one
        round trip at most every CHECK_EVERY_S; between them the last answer stands)."""
        if not is_postgres(self.engine):
            return True
        with self._lock:
            if time.monotonic() - self._checked >= CHECK_EVERY_S:
                self._checked = time.monotonic()
                self._check()
            return self.leading

    def _check(self) -> None:
        was = self.leading
        try:
            held = self._still_held()
            self.leading = held or self._take()
            self.taken_elsewhere = not self.leading
        except DBAPIError as exc:  # the database is away: so is our lock, whatever we held
            self._drop()
            self.leading = self.taken_elsewhere = False
            log.debug("leadership check failed: %s", exc)
        if self.leading != was:
            log.warning("replica %s %s", self.replica, "leads now: it runs lease expiry, heartbeats, hedging and "
                        "rollouts" if self.leading else "no longer leads")

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._checked = float("-inf")
        self.leading = not is_postgres(self.engine)

    def _still_held(self) -> bool:
        if self._conn is None or not self.leading:
            return False
        self._conn.execute(text("SELECT 1"))  # raises if the connection, and with it the lock, is gone
        return True

    def _take(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar())

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # never back to the pool: a pooled connection would keep the lock
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None
