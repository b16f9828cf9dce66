"""The smart-home hub's own services, beside the agent's MQTT side: they speak with the local
engine whether or not the broker or the control plane can be reached.

- the local API (a Unix socket, and loopback HTTP with a token) with its phrase cache,
- reminders, spoken through that API's cache,
- a Wyoming server, so Home Assistant adds the hub as a text-to-speech provider.
What the hub says this way is journaled (``edge_agent/journal.py``) and reaches the control plane
when the link is up, exactly once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from edge_agent.config import AgentSettings
from edge_agent.engines.base import Engine
from edge_agent.journal import Journal
from voicefleet import protocol as p
from voicefleet.ids import now

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: AgentSettings, engine: Engine, journal: Journal,
                 connected: Callable[[], bool] = lambda: False):
        self.settings, self.engine, self.journal = settings, engine, journal
        self.connected = connected  # is the broker reachable (the cloud path needs it)
        self.local_api = None
        self.reminders = None
        self.cache = None
        self._stops: list[Callable[[], None]] = []
        # Journal writes (an fsync each) happen off the speaking path, in order, on one thread.
        self._to_journal: queue.Queue[dict | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_journal, name="journal-writer", daemon=True)

    @property
    def enabled(self) -> bool:
        s = self.settings
        return s.local_api_port is not None or bool(s.local_api_socket) or bool(s.wyoming_uri)

    def start(self) -> None:
        from edge_agent.phrase_cache import PhraseCache

        self._writer.start()
        self.cache = PhraseCache(self.settings.data_dir() / "phrases", self.settings.phrase_cache_mb * 2**20)
        if self.settings.local_api_port is not None or self.settings.local_api_socket:
            self._start_local_api()
        if self.settings.wyoming_uri:
            from edge_agent.wyoming_server import WyomingTtsServer

            engine = JournaledEngine(self.engine, lambda r: self._journal(_spoken(r, "wyoming", self.engine)),
                                     self.cache)
            self._stops.append(WyomingTtsServer(engine, uri=self.settings.wyoming_uri).serve_in_thread())
            log.info("Wyoming server on %s", self.settings.wyoming_uri)

    def _start_local_api(self) -> None:
        from edge_agent.local_api import LocalApi
        from edge_agent.reminders import ReminderScheduler, ReminderStore

        store = ReminderStore(self.settings.data_dir() / "reminders.json")
        cache = self.cache
        cloud = control_plane_speaker(self.settings.api_url, self.settings.api_token) if self.settings.api_url else None
        api = LocalApi(self.engine, cache, store, port=self.settings.local_api_port,
                       token=self.settings.local_api_token, unix_socket=self.settings.local_api_socket,
                       on_spoken=self._journal, cloud=cloud, link_up=self._link_up)
        api.start()
        scheduler = ReminderScheduler(store, lambda text: api.say(text))
        scheduler.start()
        self.local_api, self.reminders = api, store
        self._stops += [scheduler.stop, api.stop]

    def apply(self, cmd: p.ReminderCommand) -> None:
        """A reminder change from the control plane."""
        if self.reminders is None:
            log.warning("reminder %s ignored: this agent runs no local API (set VOICEFLEET_LOCAL_API_SOCKET)",
                        cmd.reminder_id)
            return
        if cmd.op == "delete":
            self.reminders.delete(cmd.reminder_id)
            return
        try:
            self.reminders.add(cmd.text or "", at=cmd.at, every_s=cmd.every_s, time=cmd.time, id=cmd.reminder_id)
        except ValueError as exc:
            log.warning("reminder %s refused: %s", cmd.reminder_id, exc)

    def _link_up(self) -> bool:
        return bool(self.settings.api_url) and self.connected()

    def _journal(self, spoken: dict) -> None:
        self._to_journal.put({**spoken, "ts": now()})

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


def _spoken(request, source: str, engine: Engine) -> dict:
    member = engine.select(request)
    return {"text": request.text, "lang": request.lang, "dialect": request.dialect, "voice": request.voice,
            "source": source, "engine": member.descriptor.name, "fallback": None}


class JournaledEngine(Engine):
    """The hub's engine as Wyoming sees it: each request noted for the journal, and phrases served
    from (and added to) the same phrase cache as the local API."""

    def __init__(self, engine: Engine, note: Callable, cache=None):
        self._engine, self._note, self._cache = engine, note, cache
        self.descriptor, self.capabilities = engine.descriptor, engine.capabilities

    def select(self, request, engine=None):
        return self._engine.select(request, engine)

    def members(self):
        return self._engine.members()

    def synthesize(self, request, cancelled=lambda: False):
        from edge_agent.phrase_cache import cache_key

        self._note(request)
        member = self.select(request)
        d = member.descriptor
        key = cache_key(d.name, d.version, request.lang, request.dialect, request.voice, request.text)
        hit = self._cache.get(key) if self._cache is not None else None
        if hit is not None:
            return iter([hit[1]])
        return self._stream_and_keep(member, request, cancelled, key)

    def _stream_and_keep(self, member, request, cancelled, key) -> Iterator[bytes]:
        pcm = bytearray()
        for chunk in member.synthesize(request, cancelled):
            pcm += chunk
            yield chunk
        if self._cache is not None and pcm and not cancelled():
            d = member.descriptor
            self._cache.put(key, d.sample_rate, bytes(pcm), {"engine": d.name, "version": d.version,
                                                             "text": request.text[:200]})


def control_plane_speaker(api_url: str, token: str | None = None, timeout_s: float = 10.0):
    """The cloud path for the local API: submit the job to the control plane and stream its audio
    (``GET /v1/jobs/{id}/audio`` streams while the job runs). Raises on any failure, which makes the
    local API speak with the local voice and say that it fell back."""
    import json
    import urllib.error
    import urllib.request

    from edge_agent.engines.base import SynthesisRequest
    from voicefleet.api_errors import ApiError
    from voicefleet.credentials import auth_headers

    auth = auth_headers(token)

    def open_api(req: urllib.request.Request):
        try:
            return urllib.request.urlopen(req, timeout=timeout_s)  # noqa: S310 (our control plane)
        except urllib.error.HTTPError as exc:  # the fallback reason then says why the cloud refused
            raise ApiError.from_answer(exc) from None

    def speak(request: SynthesisRequest) -> tuple[int, Iterator[bytes]]:
        spec = {k: v for k, v in request.spec_fields().items() if v}
        submit = urllib.request.Request(f"{api_url.rstrip('/')}/v1/jobs", data=json.dumps(spec).encode(),
                                        headers={"content-type": "application/json", **auth}, method="POST")
        with open_api(submit) as r:
            job_id = json.loads(r.read())["id"]
        audio = open_api(urllib.request.Request(f"{api_url.rstrip('/')}/v1/jobs/{job_id}/audio", headers=auth))
        header = audio.read(44)
        rate = int.from_bytes(header[24:28], "little")

        def chunks() -> Iterator[bytes]:
            with audio:
                while block := audio.read(8192):
                    yield block

        return rate, chunks()

    return speak
