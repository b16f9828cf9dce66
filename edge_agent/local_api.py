"""The hub's own loopback API: speech that works with the broker and control plane unreachable.

Standard library only (the edge install has no web framework): the handler on a Unix socket (mode
0660: the hub's user and group, no token), and on loopback TCP only when a port is given, and then
only with a token (``Authorization: Bearer <token>``): any local user can reach a loopback port.

- ``POST /v1/speak`` {text, lang, dialect, voice, instruction} → ``audio/wav``. A local render
  streams (chunked; the WAV header says "length unknown", 0xFFFFFFFF) with the first chunk sent
  as soon as the engine yields it; a phrase already in the phrase cache comes back whole at once
  with exact lengths. ``X-Voicefleet-Source`` says ``local``, ``cache`` or ``cloud``;
  ``X-Voicefleet-Fallback`` (only present then) says why a request the cloud should have served
  was spoken locally.
- ``GET /healthz``; ``GET/POST /v1/reminders``, ``DELETE /v1/reminders/{id}``.
- Errors: ``{"error": {"code": ..., "text": ...}}``.

This module holds ``LocalApi`` (what is spoken and from where: cache, local engine or cloud); the HTTP
side is ``local_http``, the local-or-cloud decision ``local_or_cloud``.
"""

from __future__ import annotations

import logging
import os
import queue
import socketserver
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

from edge_agent.engines.base import Engine, SynthesisRequest
from edge_agent.local_http import Handler, Rendered, UnixHTTPServer
from edge_agent.local_or_cloud import cloud_wanted, decide, local_fallback
from edge_agent.phrase_cache import PhraseCache, cache_key
from edge_agent.reminders import ReminderStore
from voicefleet.errors import CodedError

log = logging.getLogger(__name__)
# (rate, chunks): the injected cloud path; it raises (or is slow) when the link is down.
CloudSpeak = Callable[[SynthesisRequest], tuple[int, Iterator[bytes]]]


class LocalApiError(CodedError):
    """The local API cannot start as configured: the text names the setting to fix."""


class LocalApi:
    def __init__(self, engine: Engine, cache: PhraseCache | None, reminders: ReminderStore | None, *,
                 host: str = "127.0.0.1", port: int | None = None, token: str | None = None,
                 unix_socket: str | os.PathLike | None = None,
                 cloud: CloudSpeak | None = None, link_up: Callable[[], bool] | None = None,
                 first_chunk_budget_s: float = 1.5, max_concurrent_renders: int = 1,
                 on_spoken: Callable[[dict], None] | None = None):
        self.engine = engine
        self.on_spoken = on_spoken  # the agent journals what the hub said on its own
        self.cache = cache
        self.reminders = reminders
        self.host, self.port, self.token = host, port, token
        self.unix_socket = os.fspath(unix_socket) if unix_socket else None
        if port is not None and not token:
            raise LocalApiError("local_api_token_missing", "the local API's TCP port needs a token, or any local "
                                "user could speak, edit reminders and send cloud jobs: set "
                                "VOICEFLEET_LOCAL_API_TOKEN (clients send Authorization: Bearer <it>), or unset "
                                "VOICEFLEET_LOCAL_API_PORT and use VOICEFLEET_LOCAL_API_SOCKET")
        if port is None and not unix_socket:
            raise LocalApiError("local_api_unreachable", "give the local API a Unix socket "
                                "(VOICEFLEET_LOCAL_API_SOCKET) or a TCP port (VOICEFLEET_LOCAL_API_PORT)")
        self.cloud = cloud
        self._link_up = link_up or (lambda: self.cloud is not None)
        self.first_chunk_budget_s = first_chunk_budget_s
        # The edge engine runs one phrase at a time (like the agent's runner): more would only slow each.
        self._render_slots = threading.BoundedSemaphore(max_concurrent_renders)
        self._servers: list[socketserver.BaseServer] = []
        self.url = ""

    def start(self) -> None:
        if self.port is not None:
            http_server = ThreadingHTTPServer((self.host, self.port), Handler)
            http_server.daemon_threads = True
            http_server.api = self  # type: ignore[attr-defined]
            http_server.token = self.token  # type: ignore[attr-defined]  (the handler asks every request for it)
            self.port = http_server.server_address[1]
            self.url = f"http://{self.host}:{self.port}"
            self._servers.append(http_server)
        if self.unix_socket:
            if os.path.exists(self.unix_socket):  # a stale socket from a previous run
                os.unlink(self.unix_socket)
            unix_server = UnixHTTPServer(self.unix_socket, Handler)
            os.chmod(self.unix_socket, 0o660)  # the hub's user and group only: no token on this socket
            unix_server.api = self  # type: ignore[attr-defined]
            unix_server.token = None  # type: ignore[attr-defined]
            self._servers.append(unix_server)
        for server in self._servers:
            threading.Thread(target=server.serve_forever, name="local-api", daemon=True).start()
        where = [self.url] if self.url else []
        log.info("local API on %s", " and ".join(where + ([f"unix:{self.unix_socket}"] if self.unix_socket else [])))

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        if self.unix_socket and os.path.exists(self.unix_socket):
            os.unlink(self.unix_socket)

    # -- speech ------------------------------------------------------------------------------

    def say(self, text: str, lang: str = "zh") -> tuple[int, bytes]:
        """(rate, pcm) of a whole phrase through the cache path: what reminders speak."""
        rendered = self.render(SynthesisRequest(text=text, lang=lang), allow_cloud=False)
        pcm = rendered.first + b"".join(rendered.rest)
        if rendered.on_complete:
            rendered.on_complete(pcm)
        return rendered.rate, pcm

    def render(self, request: SynthesisRequest, *, allow_cloud: bool = True,
               cancelled: Callable[[], bool] = lambda: False) -> Rendered:
        rendered = self._render(request, allow_cloud, cancelled)
        if self.on_spoken:
            self.on_spoken({"text": request.text, "lang": request.lang, "dialect": request.dialect,
                            "voice": request.voice, "source": rendered.source, "engine": rendered.engine,
                            "fallback": rendered.fallback})
        return rendered

    def _render(self, request: SynthesisRequest, allow_cloud: bool, cancelled: Callable[[], bool]) -> Rendered:
        caps = self.engine.capabilities
        link_up = allow_cloud and self._link_up()
        target, reason = decide(request, caps, link_up)
        fallback = reason if cloud_wanted(request, caps) else None
        if target == "cloud":
            rendered, why_not = self._try_cloud(request)
            if rendered:
                return rendered
            fallback = f"{why_not}; the local engine lacks {cloud_wanted(request, caps)}"
        return self._render_local(local_fallback(request, caps), fallback, cancelled)

    def _try_cloud(self, request: SynthesisRequest) -> tuple[Rendered | None, str]:
        """The cloud's stream if its first chunk arrives within the budget, else why not."""
        assert self.cloud is not None
        box: queue.Queue = queue.Queue(maxsize=1)

        def first_chunk() -> None:
            try:
                rate, chunks = self.cloud(request)
                box.put((rate, next(chunks), chunks))
            except Exception as exc:  # any failure of the link means: speak locally
                box.put(exc)

        threading.Thread(target=first_chunk, name="cloud-first-chunk", daemon=True).start()
        try:
            got = box.get(timeout=self.first_chunk_budget_s)
        except queue.Empty:
            return None, f"cloud gave no audio within {self.first_chunk_budget_s:g} s"
        if isinstance(got, BaseException):
            return None, f"cloud failed ({type(got).__name__}: {got})"[:300]
        rate, first, rest = got
        return Rendered("cloud", rate, first, rest, engine="cloud"), ""

    def _render_local(self, request: SynthesisRequest, fallback: str | None,
                      cancelled: Callable[[], bool]) -> Rendered:
        member = self.engine.select(request)
        desc = member.descriptor
        key = cache_key(desc.name, desc.version, request.lang, request.dialect, request.voice, request.text)
        hit = self.cache.get(key) if self.cache else None
        if hit:
            return Rendered("cache", hit[0], hit[1], iter(()), whole=True, fallback=fallback, engine=desc.name)
        chunks = self._locked(member.synthesize(request, cancelled))
        first = next(chunks, b"")

        def store(pcm: bytes) -> None:
            if self.cache and pcm and not cancelled():
                self.cache.put(key, desc.sample_rate, pcm, {"engine": desc.name, "version": desc.version,
                                                             "text": request.text[:200]})

        return Rendered("local", desc.sample_rate, first, chunks, fallback=fallback, engine=desc.name,
                        on_complete=store)

    def _locked(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        with self._render_slots:
            yield from chunks

    def health(self) -> dict:
        d = self.engine.descriptor
        return {"status": "ok", "engine": {"name": d.name, "version": d.version, "sample_rate": d.sample_rate},
                "link_up": self._link_up(), "cache": self.cache.stats() if self.cache else None,
                "reminders": len(self.reminders.list()) if self.reminders else None}
