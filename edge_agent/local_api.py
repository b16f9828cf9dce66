"""The hub's own loopback API: speech that works with the broker and control plane unreachable.

Standard library only (the edge install has no web framework): ``ThreadingHTTPServer`` on
loopback, and the same handler on a Unix socket for local daemons that should not open a port.

- ``POST /v1/speak`` {text, lang, dialect, voice, instruction} → ``audio/wav``. A local render
  streams (chunked; the WAV header says "length unknown", 0xFFFFFFFF) with the first chunk sent
  as soon as the engine yields it; a phrase already in the phrase cache comes back whole at once
  with exact lengths. ``X-Voicefleet-Source`` says ``local``, ``cache`` or ``cloud``;
  ``X-Voicefleet-Fallback`` (only present then) says why a request the cloud should have served
  was spoken locally.
- ``GET /healthz``; ``GET/POST /v1/reminders``, ``DELETE /v1/reminders/{id}``.
- Errors: ``{"error": {"code": ..., "text": ...}}``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from edge_agent.engines.base import Engine, EngineError, SynthesisRequest
from edge_agent.phrase_cache import PhraseCache, cache_key
from edge_agent.reminders import ReminderStore
from voicefleet.audio import wav_header
from voicefleet.protocol import Capabilities

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 16 * 1024
DRAIN_LIMIT_BYTES = 1024 * 1024  # a larger body is not read at all: the connection closes
MAX_TEXT_CHARS = 2000
# (rate, chunks): the injected cloud path; it raises (or is slow) when the link is down.
CloudSpeak = Callable[[SynthesisRequest], tuple[int, Iterator[bytes]]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, text: str):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


# -- the local-vs-cloud decision (pure) --------------------------------------------------------

def cloud_wanted(request: SynthesisRequest, local_caps: Capabilities) -> str | None:
    """What the local engines lack for this request (a phrase), or None when they cover it."""
    if request.prompt is not None and not local_caps.cloning:
        return f"prompt voice {request.prompt.voice_id!r}"
    return local_caps.missing_for(request)


def decide(request: SynthesisRequest, local_caps: Capabilities,
           link_up: bool) -> tuple[Literal["local", "cloud"], str]:
    """Where to speak ``request``: the cloud only for what the local model cannot do, and only with
    the link up; otherwise locally, the reason then saying what is given up."""
    missing = cloud_wanted(request, local_caps)
    if missing is None:
        return "local", "the local engine covers the request"
    if link_up:
        return "cloud", f"the local engine lacks {missing}"
    return "local", f"cloud link down; the local engine lacks {missing}"


def local_fallback(request: SynthesisRequest, local_caps: Capabilities) -> SynthesisRequest:
    """The nearest request the local engines can speak: drop the dialect, voice or instruction they
    lack (the default voice, Mandarin rather than the dialect). A language they lack stays: unsayable."""
    caps = local_caps
    dialect = request.dialect if request.dialect in caps.dialects else None
    voice = request.voice if request.voice in caps.voices or caps.cloning else None
    instruction = request.instruction if caps.instructions else None
    return request.model_copy(update={"dialect": dialect, "voice": voice, "instruction": instruction, "prompt": None})


# -- the API object --------------------------------------------------------------------------------

@dataclass
class Rendered:
    """Audio ready to send: whole (cache) or a stream whose first chunk is already in hand."""
    source: str
    rate: int
    first: bytes
    rest: Iterator[bytes]
    whole: bool = False
    fallback: str | None = None
    engine: str = ""
    on_complete: Callable[[bytes], None] | None = None


class LocalApi:
    def __init__(self, engine: Engine, cache: PhraseCache | None, reminders: ReminderStore | None, *,
                 host: str = "127.0.0.1", port: int = 0, unix_socket: str | os.PathLike | None = None,
                 cloud: CloudSpeak | None = None, link_up: Callable[[], bool] | None = None,
                 first_chunk_budget_s: float = 1.5, max_concurrent_renders: int = 1,
                 on_spoken: Callable[[dict], None] | None = None):
        self.engine = engine
        self.on_spoken = on_spoken  # the agent journals what the hub said on its own
        self.cache = cache
        self.reminders = reminders
        self.host, self.port = host, port
        self.unix_socket = os.fspath(unix_socket) if unix_socket else None
        self.cloud = cloud
        self._link_up = link_up or (lambda: self.cloud is not None)
        self.first_chunk_budget_s = first_chunk_budget_s
        # The edge engine runs one phrase at a time (like the agent's runner): more would only slow each.
        self._render_slots = threading.BoundedSemaphore(max_concurrent_renders)
        self._servers: list[socketserver.BaseServer] = []
        self.url = ""

    def start(self) -> None:
        http_server = ThreadingHTTPServer((self.host, self.port), _Handler)
        http_server.daemon_threads = True
        http_server.api = self  # type: ignore[attr-defined]
        self.port = http_server.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._servers.append(http_server)
        if self.unix_socket:
            if os.path.exists(self.unix_socket):  # a stale socket from a previous run
                os.unlink(self.unix_socket)
            unix_server = _UnixHTTPServer(self.unix_socket, _Handler)
            os.chmod(self.unix_socket, 0o660)  # the hub's user and group only: no auth on this API
            unix_server.api = self  # type: ignore[attr-defined]
            self._servers.append(unix_server)
        for server in self._servers:
            threading.Thread(target=server.serve_forever, name="local-api", daemon=True).start()
        log.info("local API on %s%s", self.url, f" and unix:{self.unix_socket}" if self.unix_socket else "")

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


# -- HTTP plumbing ------------------------------------------------------------------------------

class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked responses and keep-alive
    server_version = "voicefleet-edge"

    @property
    def api(self) -> LocalApi:
        return self.server.api  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        if self.request.family in (socket.AF_INET, socket.AF_INET6):
            # Small writes (headers, then each chunk) must not wait on Nagle and delayed ACKs (~40 ms).
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def address_string(self) -> str:  # a Unix socket's peer has no address
        return self.client_address[0] if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, fmt: str, *args) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/healthz" and method == "GET":
                return self._json(200, self.api.health())
            if path == "/v1/speak" and method == "POST":
                return self._speak()
            if path == "/v1/reminders" and method in ("GET", "POST"):
                return self._reminders_list() if method == "GET" else self._reminders_add()
            if path.startswith("/v1/reminders/") and method == "DELETE":
                return self._reminders_delete(path.rsplit("/", 1)[1])
            if path in ("/healthz", "/v1/speak", "/v1/reminders") or path.startswith("/v1/reminders/"):
                raise ApiError(405, "method_not_allowed", f"{method} is not allowed on {path}")
            raise ApiError(404, "not_found", f"no route {path}; try POST /v1/speak, GET /healthz, /v1/reminders")
        except ApiError as exc:
            self._error(exc)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        except Exception:
            log.exception("local API %s %s failed", method, path)
            self._error(ApiError(500, "internal", "internal error; the hub's log has the details"))

    # -- speak --------------------------------------------------------------------------------

    def _speak(self) -> None:
        request = _speech_request(self._body())
        gone = threading.Event()
        try:
            rendered = self.api.render(request, cancelled=gone.is_set)
        except EngineError as exc:
            status = 422 if exc.code in ("unsupported", "invalid_text", "text_too_long") else 503
            raise ApiError(status, exc.code, exc.text) from exc
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("X-Voicefleet-Source", rendered.source)
        self.send_header("X-Voicefleet-Engine", rendered.engine)
        self.send_header("X-Voicefleet-Sample-Rate", str(rendered.rate))
        if rendered.fallback:
            self.send_header("X-Voicefleet-Fallback", _header_safe(rendered.fallback))
        if rendered.whole:
            body = wav_header(rendered.rate, len(rendered.first)) + rendered.first
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._stream(rendered, gone)

    def _stream(self, rendered: Rendered, gone: threading.Event) -> None:
        parts = [rendered.first]
        try:
            self._chunk(wav_header(rendered.rate) + rendered.first)
            for pcm in rendered.rest:
                parts.append(pcm)
                self._chunk(pcm)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            gone.set()  # stops the engine at its next chunk and keeps the partial phrase out of the cache
            self.close_connection = True
            close = getattr(rendered.rest, "close", None)
            if close:
                close()  # frees the render slot now, not at garbage collection
            return
        except Exception as exc:  # headers are out: all that is left is to cut the stream short
            log.warning("%s synthesis failed mid-stream: %s", rendered.source, exc)
            self.close_connection = True
            return
        if rendered.on_complete:
            rendered.on_complete(b"".join(parts))

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    # -- reminders ------------------------------------------------------------------------------

    def _store(self) -> ReminderStore:
        if self.api.reminders is None:
            raise ApiError(404, "reminders_disabled", "reminders are not enabled on this hub")
        return self.api.reminders

    def _reminders_list(self) -> None:
        self._json(200, {"reminders": [r.to_json() for r in self._store().list()]})

    def _reminders_add(self) -> None:
        store, body = self._store(), self._body()
        unknown = set(body) - {"text", "at", "every_s", "time"}
        if unknown:
            raise ApiError(400, "invalid_request", f"unknown fields {sorted(unknown)}; use text, at, every_s, time")
        try:
            rem = store.add(body.get("text"), at=body.get("at"), every_s=body.get("every_s"), time=body.get("time"))
        except ValueError as exc:
            raise ApiError(422, "invalid_reminder", str(exc)) from exc
        self._json(201, rem.to_json())

    def _reminders_delete(self, reminder_id: str) -> None:
        if not self._store().delete(reminder_id):
            raise ApiError(404, "not_found", f"no reminder {reminder_id!r}")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- helpers --------------------------------------------------------------------------------

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "length_required", "send a JSON body with a Content-Length header")
        try:
            n = int(length)
        except ValueError:
            raise ApiError(400, "invalid_request", "Content-Length is not a number") from None
        if n > MAX_BODY_BYTES:
            if n <= DRAIN_LIMIT_BYTES:
                self.rfile.read(n)  # read it away so the client gets the answer rather than a reset
            else:
                self.close_connection = True  # the unread body would otherwise be parsed as the next request
            raise ApiError(413, "body_too_large", f"body is {n} bytes; at most {MAX_BODY_BYTES} are accepted")
        try:
            body = json.loads(self.rfile.read(n) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "body must be a JSON object")
        return body

    def _json(self, status: int, payload: object) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, exc: ApiError) -> None:
        self._json(exc.status, {"error": {"code": exc.code, "text": exc.text}})


def _speech_request(body: dict) -> SynthesisRequest:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(422, "invalid_text", "text must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(422, "text_too_long", f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
    unknown = set(body) - {"text", "lang", "dialect", "voice", "instruction"}
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown fields {sorted(unknown)}; "
                                               "use text, lang, dialect, voice, instruction")
    opts = {k: body.get(k) for k in ("lang", "dialect", "voice", "instruction")}
    for name, value in opts.items():
        if value is not None and not isinstance(value, str):
            raise ApiError(422, "invalid_request", f"{name} must be a string")
    return SynthesisRequest(text=text, lang=opts["lang"] or "zh", dialect=opts["dialect"] or None,
                            voice=opts["voice"] or None, instruction=opts["instruction"] or None)


def _header_safe(text: str) -> str:
    """HTTP headers are latin-1: keep a reason readable without breaking the response."""
    return text.encode("ascii", "backslashreplace").decode()[:500]


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket (for callers of the Unix-socket API and for tests)."""

    def __init__(self, path: str, timeout: float = 30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)

