"""Real services for the tests: a throwaway PostgreSQL cluster (the broker lives in voicefleet.broker).

Set ``VOICEFLEET_TEST_PG_URL`` (e.g. ``postgresql://postgres@db:5432/postgres``) to use an
existing server instead; each test then gets its own database there, dropped at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
import weakref
from pathlib import Path
from types import TracebackType

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from voicefleet.broker import free_port
from voicefleet.credentials import auth_headers
from voicefleet_cli.onebox import Cluster

# Every control plane the tests start (in or out of process) takes this admin token from the
# environment, and ``http`` sends it: tests speak to the API as an admin unless they test roles.
ADMIN_TOKEN = os.environ.setdefault("VOICEFLEET_ADMIN_TOKEN", f"vft_{uuid.uuid4().hex[:16]}_{uuid.uuid4().hex}")
http = httpx.Client(headers=auth_headers(ADMIN_TOKEN), timeout=30)

PG_URL_ENV = "VOICEFLEET_TEST_PG_URL"
PG_USER = "postgres"
# Durability off: a test cluster is thrown away, and fsync dominates its run time.
PG_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
_START_ATTEMPTS = 3  # the port from free_port() may be taken before postgres binds it
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing or the cluster would not start."""


def find_pg_bin() -> Path:
    """The bin directory of the newest installed PostgreSQL (Debian keeps initdb off PATH)."""
    dirs = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if dirs:
        return max(dirs, key=lambda d: _version_key(d.parent.name))
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found; install them with "
        f"`apt-get install postgresql`, or set {PG_URL_ENV} to a server the tests may use"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def _run_pg_tool(
    bin_dir: Path, cwd: Path, tool: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as `postgres` when we are root (initdb and postgres refuse root)."""
    cmd = [str(bin_dir / tool), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", PG_USER, "--", *cmd]
    # cwd: `postgres` cannot enter root's working directory, and the tools warn when they cannot.
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise PostgresUnavailable(f"{tool} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def _destroy_cluster(bin_dir: Path, cluster_dir: Path) -> None:
    """Stop the cluster at once (its data is disposable) and remove its directory."""
    if (cluster_dir / "data" / "postmaster.pid").exists():
        stop = ["-D", str(cluster_dir / "data"), "stop", "-m", "immediate"]
        _run_pg_tool(bin_dir, cluster_dir, "pg_ctl", *stop, check=False)
    shutil.rmtree(cluster_dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL cluster in a temp dir for one test session, or the server in VOICEFLEET_TEST_PG_URL."""

    def __init__(self, external_url: str | None = None) -> None:
        external_url = external_url or os.environ.get(PG_URL_ENV) or None
        self._external: URL | None = make_url(external_url) if external_url else None
        self._dir: Path | None = None
        self._bin: Path | None = None
        self.port: int | None = self._external.port if self._external else None
        self.host = (self._external.host or "127.0.0.1") if self._external else "127.0.0.1"
        self._created: list[str] = []
        self._finalizer: weakref.finalize | None = None

    @property
    def external(self) -> bool:
        return self._external is not None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database (``postgres``)."""
        return self._url_for(self._admin_url().database or "postgres")

    def start(self) -> PostgresServer:
        if self.external or self._dir is not None:
            return self
        self._bin = find_pg_bin()
        # Not under pytest's tmp dirs: those sit in a 0700 root folder that `postgres` cannot enter.
        self._dir = Path(tempfile.mkdtemp(prefix="voicefleet-pg-"))
        # pg_ctl daemonises postgres: make sure it does not outlive this process.
        self._finalizer = weakref.finalize(self, _destroy_cluster, self._bin, self._dir)
        try:
            self._initdb()
            self._start_cluster()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.external:
            self._drop_created()
            return
        if self._finalizer is not None:
            self._finalizer()  # runs once: stops the cluster and removes its directory
            self._finalizer = None
        self._dir = None

    def pause(self) -> None:
        """An outage: stop the server (fast: clients are cut off), keeping its data and its port."""
        if self.external or self._dir is None:
            raise PostgresUnavailable("only a server this process started can be paused")
        self._pg("pg_ctl", "-D", str(self._dir / "data"), "-m", "fast", "-w", "-t", "30", "stop")

    def resume(self) -> None:
        """Start a paused server again on the same port."""
        assert self._dir is not None and self.port is not None
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self._dir / 'sock'} {PG_OPTIONS}"
        self._pg("pg_ctl", "-D", str(self._dir / "data"), "-l", str(self._dir / "postgres.log"), "-o", options,
                 "-w", "-t", "30", "start")

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL (psycopg 3 driver)."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME_RE.pattern}")
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return self._url_for(name)

    def connect(self, dbname: str | None = None) -> psycopg.Connection:
        """An autocommit psycopg connection (to the maintenance database by default)."""
        url = self._admin_url()
        if dbname:
            url = url.set(database=dbname)
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return psycopg.connect(libpq, autocommit=True, connect_timeout=10)

    # -- internals ---------------------------------------------------------------------------

    def _admin_url(self) -> URL:
        if self._external is not None:
            return self._external.set(database=self._external.database or "postgres")
        if self.port is None:
            raise PostgresUnavailable("the PostgreSQL server is not started")
        return URL.create("postgresql", username=PG_USER, host=self.host, port=self.port, database="postgres")

    def _url_for(self, database: str) -> str:
        url = self._admin_url().set(drivername="postgresql+psycopg", database=database)
        return url.render_as_string(hide_password=False)

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None and self._dir is not None
        return _run_pg_tool(self._bin, self._dir, tool, *args, check=check)

    def _initdb(self) -> None:
        assert self._dir is not None
        (self._dir / "sock").mkdir()
        if os.geteuid() == 0:
            shutil.chown(self._dir, PG_USER, PG_USER)
            shutil.chown(self._dir / "sock", PG_USER, PG_USER)
        data = str(self._dir / "data")
        self._pg("initdb", "-D", data, "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")

    def _start_cluster(self) -> None:
        assert self._dir is not None
        log = self._dir / "postgres.log"
        for attempt in range(_START_ATTEMPTS):
            self.port = free_port()
            options = f"-c listen_addresses={self.host} -p {self.port} -k {self._dir / 'sock'} {PG_OPTIONS}"
            log.unlink(missing_ok=True)  # pg_ctl appends; keep only this attempt's lines
            start = ["-D", str(self._dir / "data"), "-l", str(log), "-o", options, "-w", "-t", "30", "start"]
            proc = self._pg("pg_ctl", *start, check=False)
            if proc.returncode == 0:
                return
            tail = self._log_tail()
            if "could not bind" not in tail or attempt == _START_ATTEMPTS - 1:
                output = f"{proc.stdout}{proc.stderr}"
                raise PostgresUnavailable(f"pg_ctl start failed:\n{output}\nlog tail:\n{tail}")

    def _log_tail(self, lines: int = 20) -> str:
        assert self._dir is not None
        try:
            text = (self._dir / "postgres.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _drop_created(self) -> None:
        """On a shared server, leave nothing behind."""
        with self.connect() as conn:
            for name in self._created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self._created.clear()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = "external" if self.external else str(self._dir)
        return f"PostgresServer({self.host}:{self.port}, {where})"


def new_cluster(tmp_path: Path, mqtt_url: str, *, database_url: str | None = None, **env: str) -> Cluster:
    """A ``Cluster`` for one test on the shared broker: its own SQLite database (unless given one)
    and control-plane id, and a short MQTT session expiry, so that the test's control plane stops
    collecting every later test's device messages in the broker soon after it is gone."""
    tag = uuid.uuid4().hex[:6]
    base = {"VOICEFLEET_DATABASE_URL": database_url or f"sqlite:///{tmp_path}/vf.db",
            "VOICEFLEET_CONTROL_ID": f"cp-{tag}", "VOICEFLEET_MQTT_SESSION_EXPIRY_S": "30"}
    cluster = Cluster(tmp_path / "home", mqtt_url=mqtt_url, env=base | env)
    cluster.tag = tag
    return cluster


def wait_job(base: str, job_id: str, timeout_s: float = 60) -> dict:
    """The job once it is done, failed or cancelled (its detail, as GET /v1/jobs/{id} gives it)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"{base}/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout_s}s")


def wait_for(check, what: str, timeout_s: float = 30):
    """``check()``'s first truthy value, polled until ``timeout_s``; fails naming ``what``."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
