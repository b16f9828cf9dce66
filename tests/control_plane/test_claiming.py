"""Claiming queued jobs: on PostgreSQL two claimers (control-plane replicas) never get the same
job (FOR UPDATE SKIP LOCKED); on SQLite the single dispatcher thread is the only claimer."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from control_plane import jobs
from control_plane.core.db import make_engine, upgrade
from control_plane.models import JobCreate


@pytest.fixture
def engine(database_url: str):
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        for i in range(10):
            jobs.add_job(session, spec=JobCreate(text=f"第{i}条", priority=i % 3), max_attempts=3)
        jobs.commit(session)
    yield engine
    engine.dispose()


def test_claim_order_is_priority_then_age(engine):
    with Session(engine) as session:
        claimed = jobs.claim_queued(session, engine, limit=10)
    assert [j.priority for j in claimed] == sorted((j.priority for j in claimed), reverse=True)
    same_priority = [j.created_at for j in claimed if j.priority == 0]
    assert same_priority == sorted(same_priority)


def test_concurrent_claimers_get_disjoint_jobs(engine, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no row locks: one dispatcher thread claims (see control_plane/core/db.py)")
    with Session(engine) as first, Session(engine) as second:
        a = {j.id for j in jobs.claim_queued(first, engine, limit=6)}  # held until first commits
        b = {j.id for j in jobs.claim_queued(second, engine, limit=6)}
        assert len(a) == 6 and len(b) == 4 and not a & b


def test_interactive_goes_first_but_a_starved_batch_job_takes_its_turn(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        old_batch = jobs.add_job(session, spec=JobCreate(text="旧的批量", tier="batch"), max_attempts=3)
        new_batch = jobs.add_job(session, spec=JobCreate(text="新的批量", tier="batch", priority=5), max_attempts=3)
        urgent = jobs.add_job(session, spec=JobCreate(text="交互", deadline_s=2.0), max_attempts=3)
        jobs.commit(session)
    with Session(engine) as session:
        order = [j.id for j in jobs.claim_queued(session, engine, limit=10, starve_s=3600)]
        assert order == [urgent["id"], new_batch["id"], old_batch["id"]]  # batch waits, then by priority
        promoted = [j.id for j in jobs.claim_queued(session, engine, limit=10, starve_s=-1)]
        # every batch job has waited "too long": the old one now goes before the newer interactive one
        assert promoted.index(old_batch["id"]) < promoted.index(urgent["id"])
    with Session(engine) as session:
        job = session.get(jobs.Job, urgent["id"])
        assert job.tier == "interactive" and job.deadline_at == pytest.approx(job.created_at + 2.0)
    engine.dispose()
