"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import control_plane.models  # noqa: F401  (registers the tables)
from control_plane.core.db import alembic_config, make_engine, upgrade


def test_migrations_match_models_and_downgrade(database_url: str):
    upgrade(database_url)
    upgrade(database_url)  # idempotent: a restart runs it again
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"
    assert {"device", "job", "jobevent", "audioartifact"} <= set(inspect(engine).get_table_names())
    command.downgrade(alembic_config(database_url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
