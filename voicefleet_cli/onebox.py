"""``voicefleet up``: the whole system on one box, with no configuration.

``Cluster`` runs the control plane and agents as child processes against one broker; ``up``,
the tests and the benchmarks all use it. ``run_one_box`` starts Mosquitto (unless
VOICEFLEET_MQTT_URL names a broker), the control plane and two agents (one edge, one cloud),
prints the address, and stops them in order (agents drain first) on Ctrl-C or SIGTERM.

An agent that names a benchmark-only engine (``tone``, ``timed``) or a test hook
(``VOICEFLEET_OTA_PAUSE_AFTER``), as benchmarks and tests do, runs through ``python -m
edge_agent.engines.benchmark_only``, the one entry that knows them; ``voicefleet agent`` refuses them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicefleet.api_errors import error_text
from voicefleet.broker import MosquittoBroker, free_port
from voicefleet.credentials import api_token, auth_headers
from voicefleet.processes import terminate
from voicefleet_cli import onebox_repair as repair
from voicefleet_cli.settings import CliSettings

AGENTS = (("edge-1", "edge"), ("cloud-1", "cloud"))
# A deadline, not a pace: waits end as soon as the part answers, or at once if its process exits. Two
# minutes, because a control plane starting on a box busy with a parallel test suite was seen to
# need more than one.
READY_TIMEOUT_S = 120.0
# A port this module picked (``http_port=None``) may be taken by another process before the control
# plane binds it (parallel test workers do that): it then starts again on a new one, this often.
BIND_ATTEMPTS = 3
BENCHMARK_ONLY_ENGINES = frozenset({"tone", "timed"})  # edge_agent/engines/benchmark_only.py
TEST_HOOKS = ("VOICEFLEET_OTA_PAUSE_AFTER",)
TOKEN_SOURCE_HINT = "VOICEFLEET_TOKEN, VOICEFLEET_ADMIN_TOKEN"  # voicefleet/credentials.py reads these first
AGENT_COMMAND = ["-m", "voicefleet_cli", "agent"]
BENCHMARK_AGENT_COMMAND = ["-m", "edge_agent.engines.benchmark_only"]


class ClusterError(RuntimeError):
    pass


class Cluster:
    """A control plane and its agents as child processes, logs in ``home``."""

    def __init__(self, home: Path, *, mqtt_url: str, http_port: int | None = None, http_host: str = "127.0.0.1",
                 env: dict[str, str] | None = None):
        """``http_port``: the API's port; None picks a free one, moved if another process takes it
        first, so ``api`` is final only once ``start_control_plane`` has returned."""
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.movable_port = http_port is None
        self.env = {**os.environ, **(env or {}), "VOICEFLEET_HOME": str(self.home), "VOICEFLEET_MQTT_URL": mqtt_url,
                    "VOICEFLEET_HTTP_HOST": http_host}
        self._use_port(http_port or free_port())
        self.control: subprocess.Popen | None = None
        self.agents: dict[str, subprocess.Popen] = {}

    def _use_port(self, port: int) -> None:
        self.api = f"http://{self.env['VOICEFLEET_HTTP_HOST']}:{port}"
        self.env["VOICEFLEET_HTTP_PORT"] = str(port)

    def start_control_plane(self, **env: str) -> None:
        log = self.home / "control-plane.log"
        for attempt in range(1, BIND_ATTEMPTS + 1):
            mark = log.stat().st_size if log.exists() else 0
            self.control = self._spawn(["-m", "voicefleet_cli", "control-plane"], env, "control-plane")
            try:
                self.wait(lambda: get_json(f"{self.api}/readyz").get("ready"), "the control plane", [self.control])
                return
            except ClusterError:
                if not (self.movable_port and attempt < BIND_ATTEMPTS and lost_port(log, mark)):
                    raise
            self._use_port(free_port())

    def start_agent(self, device_id: str, *, role: str = "edge", engine: str | None = "espeak", wait: bool = True,
                    **env: str) -> subprocess.Popen:
        """``engine=None`` leaves the role's default engines (the student on the edge)."""
        env = {"VOICEFLEET_DEVICE_ID": device_id, "VOICEFLEET_ROLE": role, **env}
        if engine:
            env["VOICEFLEET_ENGINE"] = engine
        proc = self.agents[device_id] = self._spawn(self._agent_command({**self.env, **env}), env,
                                                    f"agent-{device_id}")
        if wait:
            self.wait(lambda: self.device_status(device_id) == "online", f"agent {device_id}", [proc])
        return proc

    @staticmethod
    def _agent_command(env: dict[str, str]) -> list[str]:
        engines = {name.strip() for name in env.get("VOICEFLEET_ENGINE", "").split(",")}
        if engines & BENCHMARK_ONLY_ENGINES or any(env.get(hook) for hook in TEST_HOOKS):
            return BENCHMARK_AGENT_COMMAND
        return AGENT_COMMAND

    @property
    def token(self) -> str | None:
        """An admin token for this cluster's API (the control plane writes one on first start)."""
        return api_token(self.home, self.env)

    def device_status(self, device_id: str) -> str | None:
        devices = get_json(f"{self.api}/v1/devices", self.token) or []
        return next((d["status"] for d in devices if d.get("id") == device_id), None)

    def enrol_env(self, device_id: str) -> dict[str, str]:
        """What an agent needs to enrol here: a one-time token naming it (an agent that already holds
        its login ignores it, and the token expires unused)."""
        made = self.post("/v1/enrolment-tokens", {"device_id": device_id, "ttl_s": 600})
        return {"VOICEFLEET_ENROL_TOKEN": made["token"], "VOICEFLEET_API_URL": self.api}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        """One API call with this cluster's admin token: (HTTP status, decoded body); 0 when unreachable."""
        req = urllib.request.Request(f"{self.api}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **auth_headers(self.token)})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, error_text(exc.read())
        except (OSError, ValueError) as exc:
            return 0, str(exc)

    def post(self, path: str, body: dict) -> Any:
        """POST with the admin token; a refusal is a ClusterError that says what the API said."""
        status, answer = self.call("POST", path, body)
        if status // 100 != 2:
            hint = (f" (the admin token from {TOKEN_SOURCE_HINT} or {self.home / 'admin.token'} was refused; "
                    "`voicefleet admin-token` on this box makes a new one)") if status == 401 else ""
            raise ClusterError(f"POST {path} answered {status or 'nothing'}: {answer}{hint}")
        return answer

    def processes(self) -> list[subprocess.Popen]:
        return [p for p in [self.control, *self.agents.values()] if p is not None]

    def stop(self) -> None:
        for proc in [*self.agents.values(), self.control]:  # agents first, so they can hand back jobs
            if proc is not None:
                terminate(proc, timeout=40.0)

    def wait(self, check, what: str, watch: list[subprocess.Popen] | None = None,
             timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll ``check`` until it holds; fail early if a watched process (default: all) exits."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if any(p.poll() is not None for p in (self.processes() if watch is None else watch)):
                raise ClusterError(f"{what} failed to start; see the logs in {self.home}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{what} did not come up within {timeout_s:.0f}s; see the logs in {self.home}")
            time.sleep(0.1)

    def _spawn(self, args: list[str], env: dict[str, str], log_name: str) -> subprocess.Popen:
        with open(self.home / f"{log_name}.log", "ab") as out:
            return subprocess.Popen([sys.executable, *args], env={**self.env, **env},
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def lost_port(log: Path, since: int) -> bool:
    """Did the process logging to ``log`` (from byte ``since`` on) fail to bind a port another took?"""
    with open(log, "rb") as f:
        f.seek(since)
        return b"address already in use" in f.read()


def broker_login_env(broker: MosquittoBroker) -> dict[str, str]:
    """What a control plane needs to maintain a secured broker's logins (docs/security.md); its own
    password is new on each start."""
    return {"VOICEFLEET_BROKER_DIR": str(broker.workdir), "VOICEFLEET_BROKER_PID_FILE": str(broker.pid_path),
            "VOICEFLEET_MQTT_PASSWORD": secrets.token_urlsafe(24)}


def get_json(url: str, token: str | None = None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=auth_headers(token)), timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}


def run_one_box(settings: CliSettings, port: int | None = None, make_cluster: Callable[..., Cluster] = Cluster,
                replicas: int = 1) -> int:
    """``make_cluster`` builds the control side (Cluster's arguments): one control plane, or a ReplicaSet."""
    home = settings.home
    # Our own broker is secured: the control plane keeps its logins, each agent enrols for its own.
    broker = None if settings.names_broker() else MosquittoBroker(home / "broker", secured=True).start()
    mqtt_url, http_port = broker.url if broker else settings.mqtt_url, port or settings.http_port
    try:
        cluster = make_cluster(home, mqtt_url=mqtt_url, http_port=http_port, http_host=settings.http_host)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if broker:
            broker.stop()
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        cluster.start_control_plane(**(broker_login_env(broker) if broker else {}))
        notes = [note for note in [repair.admin_token(cluster)] if note]
        ids = [device_id for device_id, _ in AGENTS]
        stale = repair.revoked_logins(cluster, ids) if broker else {}  # they enrol again below
        for device_id, role in AGENTS:
            cluster.start_agent(device_id, role=role, engine=None, **(cluster.enrol_env(device_id) if broker else {}))
        notes += repair.lift_revocation_cordons(cluster, stale)
        notes += repair.cordoned_notes(cluster, [i for i in ids if i not in stale])
        behind = f" (HAProxy in front of {replicas} control planes)" if replicas > 1 else ""
        print(f"voicefleet is up: API at {cluster.api}{behind} (interactive docs at {cluster.api}/docs)\n"
              f"  console at {cluster.api}/console (sign in with the token in {home / 'admin.token'})\n"
              f"  broker {cluster.env['VOICEFLEET_MQTT_URL']}, data and logs in {home}\n"
              f"  try: voicefleet say \"今天下午三点提醒我开会\" -o reminder.wav", flush=True)
        for note in notes:
            print(f"  note: {note}", flush=True)
        while not stop.wait(1.0):
            dead = [p for p in cluster.processes() if p.poll() is not None]
            if dead:
                print(f"a child process exited ({dead[0].args}); see the logs in {home}", file=sys.stderr)
                return 1
        return 0
    except (ClusterError, repair.RepairError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        if broker:
            broker.stop()

