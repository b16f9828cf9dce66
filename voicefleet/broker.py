"""Run Debian's Mosquitto broker as a child process (``voicefleet up`` and the tests).

The broker gets its own config, log and persistence files in a work directory, listens on
loopback by default, and is stopped with SIGTERM so that it writes its persistence database:
persistent MQTT 5 sessions and their queued QoS 1 messages survive ``restart()``.

``secured=True`` turns anonymous access off and reads logins and per-user ACLs from ``passwd``
and ``acl`` in the work directory, which the control plane maintains (control_plane/broker_auth.py)
and reloads with SIGHUP, using the pid in ``mosquitto.pid``. ``tls`` makes the listener TLS-only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from voicefleet.processes import terminate

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
# Room for a 1 MiB payload (protocol.MAX_PAYLOAD_BYTES) plus topic, properties and fixed header.
MAX_PACKET_SIZE = 2 * 1024 * 1024
# A burst of QoS 1 jobs to an offline device must be queued, not dropped (default is 1000).
MAX_QUEUED_MESSAGES = 100_000
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# A secured broker's files in its work directory: logins and ACLs (written by the control plane,
# control_plane/broker_auth.py) and the pid it is told to reload by.
PASSWORD_FILE, ACL_FILE, PID_FILE = "passwd", "acl", "mosquitto.pid"
# Read-only observer logins an operator keeps there (mosquitto_passwd's format); the control plane
# copies them into PASSWORD_FILE with read access to every voicefleet topic (docs/security.md).
OBSERVERS_FILE = "observers"
_START_ATTEMPTS = 3  # a port picked by free_port() can be taken by someone else before we bind


class BrokerUnavailable(RuntimeError):
    """The mosquitto binary is missing or the broker would not start."""


@dataclass(frozen=True)
class BrokerTls:
    """The broker's certificate chain and private key (PEM) for a TLS-only listener."""

    cert_file: Path
    key_file: Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_mosquitto() -> str:
    """The path of the mosquitto binary, or BrokerUnavailable saying how to install it."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    for path in MOSQUITTO_PATHS:
        if os.access(path, os.X_OK):
            return path
    raise BrokerUnavailable("the mosquitto binary was not found; install it with `apt-get install mosquitto`")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """A mosquitto process with its own config, log and persistence files in ``workdir``.

    ``port=None`` picks a free port on first start; it then stays fixed so that ``restart()``
    brings the broker back where its clients expect it.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        persistence: bool = True,
        secured: bool = False,
        tls: BrokerTls | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.secured = secured
        self.tls = tls
        self._host = host
        self._port = port
        self._port_fixed = port is not None
        self.persistence = persistence
        self.binary = find_mosquitto()  # fail at construction, before anything else is set up
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._log_offset = 0  # where this run's lines start in the log

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = free_port(self._host)
        return self._port

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def password_path(self) -> Path:
        return self.workdir / PASSWORD_FILE

    @property
    def acl_path(self) -> Path:
        return self.workdir / ACL_FILE

    @property
    def pid_path(self) -> Path:
        """Written by us (mosquitto writes its own only when it daemonises): whom to SIGHUP."""
        return self.workdir / PID_FILE

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config_text(self) -> str:
        """The mosquitto.conf written on each start."""
        lines = [f"listener {self.port} {self.host}"]
        if self.tls:
            lines += [f"certfile {Path(self.tls.cert_file).resolve()}", f"keyfile {Path(self.tls.key_file).resolve()}"]
        if self.secured:
            # A device logs in with its device id, which then is its client id: no one can take over
            # (and so kick off) another device's session.
            lines += ["allow_anonymous false", "use_username_as_clientid true",
                      f"password_file {self.password_path.resolve()}", f"acl_file {self.acl_path.resolve()}"]
        else:
            lines.append("allow_anonymous true")
        lines += [
            "log_dest stderr",  # stdout redirected to a file stays empty (buffered)
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            f"max_packet_size {MAX_PACKET_SIZE}",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            "set_tcp_nodelay true",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir.resolve()}/"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            # As root mosquitto setuid()s to `mosquitto` after reading this file, then cannot
            # write persistence into a root-owned workdir (pytest's tmp dirs sit under a 0700
            # root folder, so chown alone does not help). Staying root is the robust choice
            # for a broker we spawn on loopback as a child process.
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def start(self) -> MosquittoBroker:
        """Start the broker and wait until its port accepts TCP connections."""
        if self.is_running():
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_START_ATTEMPTS):
            try:
                self._spawn_and_wait()
                return self
            except BrokerUnavailable:
                if self._port_fixed or attempt == _START_ATTEMPTS - 1 or not self._lost_port_race():
                    raise
                self._port = None  # someone took the port we picked: pick another
        return self

    def _lost_port_race(self) -> bool:
        return "Address already in use" in self._log_tail()

    def _spawn_and_wait(self) -> None:
        self.config_path.write_text(self.config_text())
        if self.secured:  # until the control plane writes them: nobody may log in
            for path in (self.password_path, self.acl_path):
                path.touch(mode=0o600, exist_ok=True)
        # Appended across restarts; the child keeps its own copy of the descriptor.
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        # If our process exits without stop(), do not leave a broker holding the port.
        self._finalizer = weakref.finalize(self, terminate, self._proc, STOP_TIMEOUT_S)
        self._wait_ready(START_TIMEOUT_S)
        self._port_fixed = True  # restart() must come back on the same port

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                raise BrokerUnavailable(
                    f"mosquitto exited during start (port {self.port}); log tail:\n{self._log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerUnavailable(
            f"mosquitto did not accept connections on {self.host}:{self.port} within {timeout:.0f} s;"
            f" log tail:\n{self._log_tail()}"
        )

    def _ready(self) -> bool:
        # Mosquitto logs "running" only after all its listeners are bound; a TCP connect alone
        # could be answered by another process that holds the port.
        return " running" in self._log_tail(lines=50) and _port_open(self.host, self.port)

    def _log_tail(self, lines: int = 20) -> str:
        """The last lines this run wrote to the log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the broker saves its sessions), SIGKILL after ``timeout`` seconds."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            terminate(self._proc, timeout)
            self._proc = None
            self.pid_path.unlink(missing_ok=True)

    def restart(self) -> MosquittoBroker:
        """Stop and start again on the same port, keeping persistent sessions."""
        self.stop()
        return self.start()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"MosquittoBroker({self.url}, {state}, workdir={str(self.workdir)!r})"
