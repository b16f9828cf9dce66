"""A real HTTP file server for download tests: serves a folder with Range support on a free loopback
port, counts the body bytes it sends per file, records each request's Range header, can cut a
connection part way through a file (once), the way a flaky link does, and can refuse a link (403) the
way a control plane refuses an expired signed URL."""

from __future__ import annotations

import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

BLOCK = 64 * 1024


class RangeServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.bytes_sent: Counter[str] = Counter()  # path (under root) -> body bytes written
        self.requests: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        self._cuts: dict[str, int] = {}
        self.refused_queries: set[str] = set()  # a request with one of these query strings gets 403
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def cut_once(self, path: str, after_bytes: int) -> None:
        """The next response for ``path`` stops after ``after_bytes`` body bytes and the connection closes."""
        self._cuts[path] = after_bytes

    def total_sent(self) -> int:
        return sum(self.bytes_sent.values())

    def start(self) -> RangeServer:
        threading.Thread(target=self._server.serve_forever, name="range-server", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                rel = unquote(url.path).lstrip("/")
                if url.query in server.refused_queries:
                    return self._status(rel, 403)
                file = (server.root / rel).resolve()
                if server.root.resolve() not in file.parents or not file.is_file():
                    return self._status(rel, 404)
                size, start = file.stat().st_size, 0
                rng = self.headers.get("Range")
                if rng:
                    m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
                    if not m or int(m[1]) >= size:
                        return self._status(rel, 416, rng)
                    start = int(m[1])
                with server._lock:
                    server.requests.append((rel, rng, 206 if rng else 200))
                    cut = server._cuts.pop(rel, None)
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(size - start))
                self.send_header("Accept-Ranges", "bytes")
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.end_headers()
                budget = size - start if cut is None else cut
                with open(file, "rb") as f:
                    f.seek(start)
                    while budget > 0 and (block := f.read(min(BLOCK, budget))):
                        try:
                            self.wfile.write(block)
                        except OSError:
                            return
                        budget -= len(block)
                        with server._lock:
                            server.bytes_sent[rel] += len(block)
                if cut is not None:
                    self.close_connection = True
                    self.connection.shutdown(2)  # the link drops mid-file

            def _status(self, rel: str, code: int, rng: str | None = None) -> None:
                with server._lock:
                    server.requests.append((rel, rng, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
