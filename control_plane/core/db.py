"""Database engine and migrations. SQLite (WAL) by default, PostgreSQL in production.

SQLite has no ``FOR UPDATE SKIP LOCKED``: there the control plane is the single writer of
assignments (one dispatcher thread). PostgreSQL claims queued jobs with SKIP LOCKED so that
several replicas can share one database.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import create_engine

from voicefleet.errors import CodedError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def wait_for_database(engine: Engine, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            return
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class DatabaseUnavailable(CodedError):
    """The database does not answer: nothing was written; the same request may pass in a moment."""

    retry_after_s = 5

    def __init__(self, detail: str = ""):
        super().__init__("database_unavailable", "the database is not answering; nothing was written, try again "
                         "shortly" + (f" ({detail})" if detail else ""))


def database_up(engine: Engine) -> bool:
    """One round trip: does the database answer now? (Tells an outage from a failure of the request.)"""
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return True
    except DBAPIError:
        return False


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(alembic_config(url), "head")
