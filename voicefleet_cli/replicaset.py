"""N control-plane replicas on one PostgreSQL and one broker, behind HAProxy from Debian, as they run
past one machine (docs/scaling.md), on this box: ``voicefleet up --replicas N`` and the tests.

The proxy balances round robin over the replicas that answer ``/readyz`` (every half second; two
misses take one out); the first replica started leads, the others forward changes to it, and any of
them takes the lead when the leader dies. The agents are told the proxy's address
(VOICEFLEET_PUBLIC_URL), as agents elsewhere would be told a load balancer's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

from voicefleet.broker import free_port
from voicefleet.processes import terminate
from voicefleet_cli.onebox import BIND_ATTEMPTS, Cluster, ClusterError, get_json, lost_port

HAPROXY_CONFIG = """global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    option redispatch
    retries 2
    retry-on conn-failure
frontend api
    bind {host}:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
"""


class ReplicaSet(Cluster):
    """``api`` is the proxy's address; ``replicas[i]`` the i-th control plane's process (None: stopped)."""

    def __init__(self, home: Path, *, mqtt_url: str, database_url: str, http_port: int | None = None, replicas: int = 3,
                 http_host: str = "127.0.0.1", env: dict[str, str] | None = None):
        """``http_port``: the proxy's (the API's) port; None picks a free one."""
        http_port = http_port or free_port()
        if not database_url.startswith("postgresql"):
            raise ClusterError("replicas share one PostgreSQL: set VOICEFLEET_DATABASE_URL to a postgresql+psycopg:// "
                               "URL (SQLite is for one control plane)")
        if shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists():
            raise ClusterError("replicas run behind HAProxy: install it (apt-get install haproxy)")
        api = f"http://{http_host}:{http_port}"
        shared = {"VOICEFLEET_DATABASE_URL": database_url, "VOICEFLEET_PUBLIC_URL": api,
                  "VOICEFLEET_MQTT_CLIENT_ID": f"dispatcher-{Path(home).name}"}
        super().__init__(home, mqtt_url=mqtt_url, http_port=http_port, http_host=http_host, env=shared | (env or {}))
        self.ports = [free_port() for _ in range(replicas)]
        self.replicas: list[subprocess.Popen | None] = [None] * replicas
        self.proxy: subprocess.Popen | None = None
        self._stopping = threading.Event()

    def start_control_plane(self, **env: str) -> None:
        """Every replica, one after the other (the first leads), then the proxy in front of them."""
        for i in range(len(self.replicas)):
            self.start_replica(i, **env)
        config = self.home / "haproxy.cfg"
        host, port = self.api.removeprefix("http://").rsplit(":", 1)
        servers = "\n".join(f"    server cp-{i} 127.0.0.1:{p} check" for i, p in enumerate(self.ports))
        config.write_text(HAPROXY_CONFIG.format(host=host, port=port, servers=servers))
        with open(self.home / "haproxy.log", "ab") as out:
            self.proxy = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)],
                                          stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.wait(lambda: get_json(f"{self.api}/readyz").get("ready"), "HAProxy", [self.proxy])
        threading.Thread(target=self._supervise, args=(env,), name="replica-supervisor", daemon=True).start()

    def _supervise(self, env: dict[str, str]) -> None:
        """Start again a replica that exited on its own (one that found the lead taken by another steps
        down that way), as Kubernetes would; one killed by ``kill_replica`` stays down until asked."""
        while not self._stopping.wait(1.0):
            for i, proc in enumerate(self.replicas):
                if proc is not None and proc.poll() is not None and not self._stopping.is_set():
                    try:
                        self.start_replica(i, **env)
                    except ClusterError:
                        pass  # tried again at the next pass

    def start_replica(self, i: int, **env: str) -> None:
        """Start replica ``i``; until the proxy knows the ports, one another process took first is
        replaced by a new one (as ``Cluster.start_control_plane`` does)."""
        log = self.home / f"control-plane-{i}.log"
        for attempt in range(1, BIND_ATTEMPTS + 1):
            mark = log.stat().st_size if log.exists() else 0
            url = f"http://127.0.0.1:{self.ports[i]}"
            self.replicas[i] = self._spawn(["-m", "voicefleet_cli", "control-plane"],
                                           {"VOICEFLEET_HTTP_PORT": str(self.ports[i]),
                                            "VOICEFLEET_HTTP_HOST": "127.0.0.1", "VOICEFLEET_CONTROL_ID": f"cp-{i}",
                                            "VOICEFLEET_REPLICA_URL": url, **env},
                                           f"control-plane-{i}")
            if self.control is None or self.control.poll() is not None:  # the first live replica
                self.control = self.replicas[i]
            try:
                self.wait(lambda url=url: get_json(f"{url}/readyz").get("ready"), f"control-plane replica {i}",
                          [self.replicas[i]])
                return
            except ClusterError:
                if not (self.proxy is None and attempt < BIND_ATTEMPTS and lost_port(log, mark)):
                    raise
            self.ports[i] = free_port()

    def replica_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def leader(self) -> int | None:
        """Which replica leads now: its readiness checks name the broker, whether it answers now or not."""
        for i, proc in enumerate(self.replicas):
            if proc is not None and "broker" in get_json_any(f"{self.replica_url(i)}/readyz").get("checks", {}):
                return i
        return None

    def kill_replica(self, i: int) -> None:
        proc = self.replicas[i]
        if proc is not None:
            proc.kill()
            proc.wait()
        self.replicas[i] = None

    def processes(self) -> list[subprocess.Popen]:
        return [p for p in [*self.replicas, self.proxy, *self.agents.values()] if p is not None]

    def stop(self) -> None:
        self._stopping.set()
        for proc in [*self.agents.values(), *self.replicas, self.proxy]:
            if proc is not None:
                terminate(proc, timeout=40.0)


def get_json_any(url: str) -> dict:
    """The JSON body whatever the status (readiness answers 503 with its checks); {} when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return json.loads(exc.read())
        except ValueError:
            return {}
    except (OSError, ValueError):
        return {}
