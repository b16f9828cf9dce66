"""Job data functions: create, claim, transition. They know nothing of HTTP or MQTT.

Every transition is written (and an event row added) before anything is announced; handlers
of device events are idempotent: a repeated or stale event changes nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, func, insert, or_
from sqlmodel import Session, col, select

from control_plane import job_log
from control_plane.core.db import is_postgres
from control_plane.events import job_changed
from control_plane.models import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Job,
    JobCreate,
    JobEvent,
    JobState,
)
from control_plane.scheduler import DeviceView, FleetStats, JobInfo, unservable_reason
from control_plane.voices import find as find_voice
from voicefleet import protocol as p
from voicefleet.errors import CodedError
from voicefleet.ids import new_id, now
from voicefleet.text.dialects import resolve_auto
from voicefleet.text.instructions import Instruction, parse_instruction


class Unservable(CodedError):
    """No device in the fleet can serve what this job asks for."""

    def __init__(self, text: str):
        super().__init__("unservable", text)


class QueueFull(CodedError):
    """The queue is at its bound; ``retry_after_s`` is how long the current drain rate needs."""

    def __init__(self, depth: int, retry_after_s: int, tier: str | None = None):
        super().__init__("queue_full", f"{depth} {tier + ' ' if tier else ''}jobs are queued; retry later")
        self.depth = depth
        self.retry_after_s = retry_after_s
        self.tier = tier


def needs_of(job: p.SpeechSpec) -> p.SpeechSpec:
    """What an engine must offer for this job: its spec, less an instruction that only asks for a
    dialect or a language ("用粤语说"): resolve() made it the job's dialect, so it needs no
    instruction-following engine."""
    fields = job.spec_fields()
    if fields["instruction"] and not _parsed(fields["instruction"]).needs.instructions:
        fields["instruction"] = None
    return p.SpeechSpec(**fields)


@lru_cache(maxsize=4096)
def _parsed(instruction: str) -> Instruction:
    return parse_instruction(instruction)


def resolve(spec: JobCreate, servable_dialects: set[str]) -> JobCreate:
    """The job as it will be scheduled: the dialect an instruction asks for, and "auto" resolved
    by region against what the online fleet can speak (the call-centre case)."""
    update: dict[str, Any] = {}
    if spec.instruction:
        parsed = _parsed(spec.instruction)
        if parsed.dialect and not spec.dialect:
            update["dialect"] = parsed.dialect
        if parsed.language and parsed.language != spec.lang and not parsed.dialect:
            update["lang"] = parsed.language
    if (update.get("dialect") or spec.dialect) == "auto":
        update["dialect"] = resolve_auto(spec.region, servable_dialects) if spec.region else None
    return spec.model_copy(update=update) if update else spec


def info_of(job: Job) -> JobInfo:
    return JobInfo(id=job.id, needs=needs_of(job), chars=spoken_chars(job.text), deadline_at=job.deadline_at,
                   quality=job.quality or "best")


def assignment(job: Job, *, prompt: p.VoicePrompt | None, lease_s: float, engine: str | None = None) -> p.JobAssign:
    """The wire message handing the job's current attempt to ``engine`` on its device: the job's spec,
    flat, with a voice named ``engine:preset`` reduced to the preset that engine knows."""
    fields = job.spec_fields() | {"voice": p.split_voice(job.voice)[1]}
    return p.JobAssign(job_id=job.id, attempt=job.attempt, **fields, prompt=prompt, engine=engine, lease_s=lease_s)


def speaker(device_id: str, offer: p.EngineOffer, voice: str | None,
            fallback: dict[str, str] | None = None) -> dict[str, Any]:
    """Who speaks a job: the device, its engine (name, version, model), the voice and its tier, and
    what placement fell back from. ``voice``: the job's (None: the engine's first preset)."""
    preset = p.split_voice(voice)[1]
    return {"device": device_id, "engine": offer.name, "version": offer.engine.version, "model": offer.engine.model,
            "voice": preset or next(iter(offer.capabilities.voices), None), "tier": offer.tier, "fallback": fallback}


def spoken_chars(text: str) -> int:
    """What the audio length scales with: characters that are not spaces or punctuation."""
    return sum(1 for ch in text if ch.isalnum())


def queue_depth(session: Session) -> dict[str, int]:
    """Queued jobs per tier."""
    rows = session.exec(select(Job.tier, func.count()).where(Job.state == JobState.queued).group_by(Job.tier)).all()
    return {"interactive": 0, "batch": 0} | {tier: n for tier, n in rows}


def active_assignments(session: Session) -> list[tuple]:
    """(job id, device, assigned at, lang, text, explain) of every job in flight: the scheduler's timeline."""
    return list(session.exec(select(Job.id, Job.device_id, Job.assigned_at, Job.lang, Job.text, Job.explain)
                             .where(Job.state.in_(ACTIVE_STATES))).all())


def check_voice(session: Session, spec: JobCreate, presets: set[str], *, owner: str | None = None) -> None:
    """A job's voice is a preset some engine offers or a voice in the library that ``owner`` may use
    (None: any; another client's voice is unknown here, as on /v1/voices). A prompt voice only a
    cloning engine can serve: the capability check then says so."""
    if spec.voice and spec.voice not in presets and find_voice(session, spec.voice, owner=owner) is None:
        offered = ", ".join(sorted(presets)) or "none yet"
        raise Unservable(f"unknown voice {spec.voice!r}: use a preset a device offers ({offered}) or the id of "
                         "an uploaded voice (POST /v1/voices)")


def check_servable(spec: JobCreate, fleet: list[DeviceView], stats: FleetStats, *, grace_s: float = 0.0) -> None:
    """Raise Unservable when no capable device is online and healthy, nor away for less than
    ``grace_s`` (busy is fine: it queues)."""
    reason = unservable_reason(needs_of(spec), fleet, stats, grace_s, now())
    if reason:
        raise Unservable(reason)


def add_job(session: Session, *, spec: JobCreate, max_attempts: int, owner: str | None = None) -> dict[str, Any]:
    """A queued job (as its row) and its first event, added to the caller's transaction."""
    fields = spec.model_dump()
    deadline_s = fields.pop("deadline_s")
    fields.pop("region")
    row = {**_JOB_COLUMNS, **fields, "id": new_id(), "state": JobState.queued.value, "attempt": 0,
           "created_at": now(), "max_attempts": max_attempts, "owner": owner}
    row["deadline_at"] = row["created_at"] + deadline_s if deadline_s else None
    pending(session, Job).append(row)
    record_event(session, job_id=row["id"], kind="queued", ts=row["created_at"])
    job_changed(session, row)
    return row


# -- rows written in bulk --------------------------------------------------------------------
# Inserts that nothing reads back within the transaction (new jobs, events, artifacts) are
# collected and written with one executemany each at commit: ORM objects cost far more.

_JOB_COLUMNS = {c.name: None for c in Job.__table__.columns}


def pending(session: Session, model: type) -> list[dict[str, Any]]:
    return session.info.setdefault("pending", {}).setdefault(model, [])


def record_event(session: Session, *, job_id: str, kind: str, attempt: int = 0, device_id: str | None = None,
                 event_id: str | None = None, detail: dict | None = None, ts: float | None = None) -> None:
    pending(session, JobEvent).append({"job_id": job_id, "attempt": attempt, "kind": kind, "device_id": device_id,
                                       "event_id": event_id, "detail": detail, "ts": ts or now()})


def write_pending(session: Session) -> None:
    """Insert the collected rows (jobs first: events and artifacts refer to them)."""
    session.flush()
    conn = session.connection()  # Core executemany: the ORM's bulk path costs more than the insert
    for model, rows in sorted(session.info.pop("pending", {}).items(), key=lambda kv: kv[0] is not Job):
        if rows:
            conn.execute(insert(model.__table__), rows)
            if model is JobEvent:
                job_log.stage(session, rows)


def commit(session: Session) -> None:
    write_pending(session)
    session.commit()


def get_job(session: Session, *, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(session: Session, *, state: str | None = None, owner: str | None = None, device_id: str | None = None,
              dialect: str | None = None, since: float | None = None, until: float | None = None,
              q: str | None = None, limit: int = 100) -> list[Job]:
    """The newest jobs matching every filter given: created in [since, until], ``q`` in the text
    (case-insensitive) or the id."""
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    for column, value in ((Job.state, state), (Job.owner, owner), (Job.device_id, device_id),
                          (Job.dialect, dialect)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Job.created_at >= since)
    if until is not None:
        query = query.where(Job.created_at <= until)
    if q:
        query = query.where(or_(Job.id == q, col(Job.text).icontains(q, autoescape=True)))
    return list(session.exec(query).all())


def job_events(session: Session, *, job_id: str) -> list[JobEvent]:
    return list(session.exec(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)).all())


def inflight_by_device(session: Session) -> dict[str, int]:
    rows = session.exec(
        select(Job.device_id, func.count()).where(Job.state.in_(ACTIVE_STATES)).group_by(Job.device_id)
    ).all()
    return {device: n for device, n in rows}


def claim_queued(session: Session, engine: Engine, *, limit: int, starve_s: float = 30.0) -> list[Job]:
    """Queued jobs, most urgent first: interactive before batch, except that a batch job queued
    longer than ``starve_s`` takes its turn among them (no starvation). PostgreSQL locks the rows
    with SKIP LOCKED so replicas never claim the same job; SQLite relies on the single dispatcher."""
    claimed = []
    for tier in ("interactive", "batch"):
        q = (select(Job).where(Job.state == JobState.queued, Job.tier == tier)
             .order_by(Job.priority.desc(), Job.created_at).limit(limit))
        if is_postgres(engine):
            q = q.with_for_update(skip_locked=True)
        claimed += session.exec(q).all()
    cutoff = now() - starve_s

    def urgency(job: Job) -> tuple:
        promoted = job.tier == "interactive" or job.created_at < cutoff
        return (0 if promoted else 1, -job.priority, job.created_at)

    return sorted(claimed, key=urgency)[:limit]


def assign(session: Session, job: Job, *, device_id: str, lease_s: float, explain: dict[str, Any],
           spoken_by: dict[str, Any] | None = None) -> None:
    t = now()
    job.state = JobState.assigned
    job.device_id = device_id
    job.attempt += 1
    job.assigned_at = t
    job.lease_expires_at = t + lease_s
    job.explain = explain
    job.spoken_by = spoken_by
    session.add(job)
    record_event(session, job_id=job.id, attempt=job.attempt, kind="assigned", device_id=device_id,
                         detail={"reason": explain.get("reason")}, ts=t)
    job_changed(session, job)


def current_attempt(session: Session, *, job_id: str, attempt: int, device_id: str) -> Job | None:
    """The job if this (attempt, device) is the live one; None for stale or unknown events."""
    job = session.get(Job, job_id)
    if job is None or job.attempt != attempt or job.device_id != device_id:
        return None
    if job.state not in ACTIVE_STATES:
        return None
    return job


def mark_started(session: Session, job: Job, *, ts: float) -> None:
    if job.state == JobState.assigned:
        job.state = JobState.running
        job.started_at = ts
        session.add(job)
        record_event(session, job_id=job.id, attempt=job.attempt, kind="started", device_id=job.device_id, ts=ts)
        job_changed(session, job)


def mark_first_chunk(session: Session, job: Job, *, sample_rate: int) -> None:
    if job.first_chunk_at is None:
        job.first_chunk_at = now()
        job.sample_rate = sample_rate
        if job.state == JobState.assigned:
            job.state = JobState.running
            job.started_at = job.first_chunk_at
            job_changed(session, job)
        session.add(job)


def mark_done(session: Session, job: Job, *, event_id: str | None, spoken_by: dict[str, Any] | None = None) -> None:
    """``spoken_by``: who the device says spoke it (it confirms, or corrects, what placement planned)."""
    job.state = JobState.done
    if spoken_by is not None:
        job.spoken_by = {**(job.spoken_by or {}), **spoken_by}
    job.finished_at = now()
    job.lease_expires_at = None
    session.add(job)
    record_event(session, job_id=job.id, attempt=job.attempt, kind="done", device_id=job.device_id,
                 event_id=event_id, ts=job.finished_at)
    job_changed(session, job)


def fail_attempt(session: Session, job: Job, *, code: str, text: str, retryable: bool,
                 event_id: str | None = None) -> bool:
    """End this attempt; requeue when allowed. Returns True if the job went back to the queue."""
    t = now()
    record_event(session, job_id=job.id, attempt=job.attempt, kind="attempt_failed", device_id=job.device_id,
                 event_id=event_id, detail={"code": code, "text": text}, ts=t)
    write_pending(session)
    failures = [e.detail for e in job_events(session, job_id=job.id) if e.kind == "attempt_failed" and e.detail]
    job.error_code, job.error_text = code, text
    job.lease_expires_at = None
    if retryable and len(failures) < job.max_attempts:
        _requeue(job)
        session.add(job)
        job_changed(session, job)
        return True
    job.state = JobState.failed
    job.finished_at = t
    job.error_text = "; ".join(f"{r['code']}: {r['text']}" for r in failures)
    session.add(job)
    record_event(session, job_id=job.id, attempt=job.attempt, kind="failed", ts=t)
    job_changed(session, job)
    return False


def hand_back(session: Session, job: Job, *, reason: str, event_id: str | None = None) -> None:
    """The device returned the job unstarted: back to the queue, not counted as a failure
    (attempt numbers still only grow, so an old assignment can never be mistaken for a new one)."""
    record_event(session, job_id=job.id, attempt=job.attempt, kind="returned", device_id=job.device_id,
                 event_id=event_id, detail={"reason": reason})
    _requeue(job)
    session.add(job)
    job_changed(session, job)


def _requeue(job: Job) -> None:
    job.state = JobState.queued
    job.device_id = None
    job.lease_expires_at = None
    job.first_chunk_at = None
    job.started_at = None


def cancel_job(session: Session, job: Job) -> None:
    if job.state in TERMINAL_STATES:
        return
    job.state = JobState.cancelled
    job.finished_at = now()
    job.lease_expires_at = None
    session.add(job)
    record_event(session, job_id=job.id, attempt=job.attempt, kind="cancelled", device_id=job.device_id)
    job_changed(session, job)


def active_jobs_of(session: Session, *, device_id: str) -> list[Job]:
    return list(session.exec(select(Job).where(Job.device_id == device_id, Job.state.in_(ACTIVE_STATES))).all())


def expired_leases(session: Session, *, at: float) -> list[Job]:
    return list(session.exec(select(Job).where(Job.state.in_(ACTIVE_STATES), Job.lease_expires_at < at)).all())


def counts_by_state(session: Session) -> dict[str, int]:
    rows = session.exec(select(Job.state, func.count()).group_by(Job.state)).all()
    return {state: n for state, n in rows}


def jobs_by_id(session: Session, ids: set[str]) -> list[Job]:
    """Load these jobs into the session in one query (later ``session.get`` calls are free)."""
    return list(session.exec(select(Job).where(Job.id.in_(ids))).all()) if ids else []
