"""Wake-ups for HTTP clients following a job: the dispatcher thread says "job X changed",
waiting asyncio tasks wake and re-read the store. Nothing here holds audio."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable


class JobWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)
        self.forward: Callable[[str], None] | None = None  # told of local changes (control_plane/relay.py)

    def subscribe(self, job_id: str) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters[job_id].add(entry)
        return entry

    def unsubscribe(self, job_id: str, entry) -> None:
        with self._lock:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(entry)
                if not waiters:
                    del self._waiters[job_id]

    def notify(self, job_id: str, *, remote: bool = False) -> None:
        """Thread-safe; cheap when nobody follows the job. ``remote``: another replica's change."""
        if self.forward is not None and not remote:
            self.forward(job_id)
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for loop, ev in waiters:
            loop.call_soon_threadsafe(ev.set)
