"""The smart-home hub's own services, beside the agent's MQTT side: they speak with the local
engine whether or not the broker or the control plane can be reached.

- the local API (loopback HTTP and a Unix socket) with its phrase cache,
- reminders, spoken through that API's cache,
- a Wyoming server, so Home Assistant adds the hub as a text-to-speech provider.
What the hub says this way is journaled (``edge_agent/journal.py``) and reaches the control plane
when the link is up, exactly once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from edge_agent.config import AgentSettings
from edge_agent.engines.base import Engine
from edge_agent.journal import Journal
from voicefleet import protocol as p

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: AgentSettings, engine: Engine, journal: Journal):
        self.settings, self.engine, self.journal = settings, engine, journal
        self.local_api = None
        self._stops: list[Callable[[], None]] = []
        # Journal writes (an fsync each) happen off the speaking path, in order, on one thread.
        self._to_journal: queue.Queue[dict | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_journal, name="journal-writer", daemon=True)

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.local_api_port is not None or bool(s.local_api_socket) or bool(s.wyoming_uri)

    def start(self) -> None:
        self._writer.start()
        if self.settings.local_api_port is not None or self.settings.local_api_socket:
            self._start_local_api()
        if self.settings.wyoming_uri:
            from edge_agent.wyoming_server import WyomingTtsServer

            self._stops.append(WyomingTtsServer(self.engine, uri=self.settings.wyoming_uri).serve_in_thread())
            log.info("Wyoming server on %s", self.settings.wyoming_uri)

    def _start_local_api(self) -> None:
        from edge_agent.local_api import LocalApi
        from edge_agent.phrase_cache import PhraseCache
        from edge_agent.reminders import ReminderScheduler, ReminderStore

        data = self.settings.data_dir()
        store = ReminderStore(data / "reminders.json")
        cache = PhraseCache(data / "phrases", self.settings.phrase_cache_mb * 2**20)
        api = LocalApi(self.engine, cache, store, port=self.settings.local_api_port or 0,
                       unix_socket=self.settings.local_api_socket, on_spoken=self._journal)
        api.start()
        scheduler = ReminderScheduler(store, lambda text: api.say(text))
        scheduler.start()
        self.local_api = api
        self._stops += [scheduler.stop, api.stop]
        log.info("local API on %s", api.url)

    def _journal(self, spoken: dict) -> None:
        self._to_journal.put({**spoken, "ts": p.now()})

    def _write_journal(self) -> None:
        while (spoken := self._to_journal.get()) is not None:
            try:
                self.journal.append("local_job", spoken.pop("ts"), spoken)
            except Exception:
                log.exception("could not journal a spoken phrase")

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:
                log.exception("stopping a hub service failed")
        if self._writer.is_alive():
            self._to_journal.put(None)  # after everything already queued
            self._writer.join(5)
