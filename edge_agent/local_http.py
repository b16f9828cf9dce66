"""The local API's HTTP side (standard library only): routes, bodies, chunked WAV streaming and error
answers ``{"error": {"code": ..., "text": ...}}``, on loopback TCP or a Unix socket. What is spoken,
and from where, is ``LocalApi``'s (``edge_agent/local_api.py``)."""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Protocol

from edge_agent.engines.base import EngineError, SynthesisRequest
from edge_agent.reminders import ReminderStore
from voicefleet import protocol as p
from voicefleet.audio import wav_header
from voicefleet.text.speakable import unspeakable

log = logging.getLogger(__name__)
# A text the control plane takes (under MAX_TEXT_CHARS) fits even as JSON's 12-byte escapes of
# characters beyond the BMP (\ud840\udc00), with room for the other fields.
MAX_BODY_BYTES = 12 * p.MAX_TEXT_CHARS + 16 * 1024
DRAIN_LIMIT_BYTES = 1024 * 1024  # a larger body is not read at all: the connection closes


class ApiError(Exception):
    def __init__(self, status: int, code: str, text: str):
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


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


class Speaker(Protocol):
    """What the handler serves (``LocalApi``): speech, health, the reminder store if any."""

    reminders: ReminderStore | None

    def render(self, request: SynthesisRequest, *, allow_cloud: bool = True,
               cancelled: Callable[[], bool] = lambda: False) -> Rendered: ...

    def health(self) -> dict: ...


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked responses and keep-alive
    server_version = "voicefleet-edge"

    @property
    def api(self) -> Speaker:
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
            self._authorize()
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
            status = 422 if p.request_fault(exc.code) else 503  # the request's fault, or the hub's
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

    def _authorize(self) -> None:
        """On TCP, every request carries the hub's token (the Unix socket's file mode guards it instead)."""
        token = getattr(self.server, "token", None)
        if token is None:
            return
        sent = self.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(sent, f"Bearer {token}".encode()):
            self.close_connection = True  # its body is unread: it must not be parsed as the next request
            raise ApiError(401, "unauthorized", "send the hub's local API token: Authorization: Bearer "
                           "<VOICEFLEET_LOCAL_API_TOKEN> (or use its Unix socket, VOICEFLEET_LOCAL_API_SOCKET)")

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
    if not isinstance(text, str) or not text:
        raise ApiError(422, "invalid_text", "text must be a non-empty string")
    why = unspeakable(text)  # the same code and words as the control plane's submit and every engine
    if why is not None:
        raise ApiError(422, why.code, why.text)
    too_long = p.text_too_long(text)  # the control plane's limit and words: what it takes, the hub takes
    if too_long:
        raise ApiError(422, "text_too_long", too_long)
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
