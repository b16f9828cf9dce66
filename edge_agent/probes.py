"""Health probes for an agent run by an orchestrator (a GPU worker on Kubernetes): plain HTTP on
``VOICEFLEET_HEALTH_PORT``, standard library only, no token (they say nothing about jobs or voices).

- ``GET /healthz`` (liveness): the agent's own loops still turn. The heartbeat loop ticks every
  ``telemetry_interval_s`` whether or not the broker answers, so a tick older than three intervals
  (and 10 s) means the process is wedged (a hung driver call, a deadlock) and a restart is the cure. 503 names
  what stalled.
- ``GET /readyz`` (readiness): it can take jobs now: connected to the broker and not draining. A
  broker outage or a drain is not a reason to restart, so it does not fail liveness.

Each answers ``{"ok": bool, "checks": {name: detail}}``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)
STALL_INTERVALS = 3  # heartbeats missed before liveness fails,
MIN_STALL_S = 10.0  # and never sooner than this: a busy box's late tick is not a wedged process


class Probes:
    """What the routes read, as callables, so the agent's state stays the agent's."""

    def __init__(self, *, interval_s: float, connected: Callable[[], bool], draining: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic):
        self.interval_s = interval_s
        self.connected, self.draining, self.clock = connected, draining, clock
        self._last_tick = clock()

    def tick(self) -> None:
        """The heartbeat loop turned."""
        self._last_tick = self.clock()

    def live(self) -> tuple[bool, dict[str, str]]:
        if self.draining():  # the heartbeat loop has ended; the drain has a time limit of its own
            return True, {"heartbeat": "draining"}
        age = self.clock() - self._last_tick
        if age > max(STALL_INTERVALS * self.interval_s, MIN_STALL_S):
            return False, {"heartbeat": f"stalled: last tick {age:.0f} s ago (every {self.interval_s:g} s expected)"}
        return True, {"heartbeat": f"last tick {age:.1f} s ago"}

    def ready(self) -> tuple[bool, dict[str, str]]:
        connected, draining = self.connected(), self.draining()
        checks = {"broker": "connected" if connected else "not connected",
                  "draining": "yes: taking no new jobs" if draining else "no"}
        return connected and not draining, checks


class ProbeServer:
    def __init__(self, probes: Probes, host: str, port: int):
        routes = {"/healthz": probes.live, "/readyz": probes.ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                check = routes.get(self.path.split("?", 1)[0])
                if check is None:
                    ok, doc = False, {"error": {"code": "not_found",
                                                "text": f"no route {self.path}; try GET /healthz or /readyz"}}
                    status = 404
                else:
                    ok, checks = check()
                    doc, status = {"ok": ok, "checks": checks}, 200 if ok else 503
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002 (the standard library's name)
                pass  # probes every few seconds are not news

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, name="probes", daemon=True).start()
        log.info("health probes on port %d (/healthz, /readyz)", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
