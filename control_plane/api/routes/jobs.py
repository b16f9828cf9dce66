"""Speech jobs: submit, inspect, cancel, and fetch or follow their audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from sqlmodel import Session, select

from control_plane import jobs
from control_plane.api.auth import PrincipalDep, allow
from control_plane.api.deps import Services, ServicesDep, SessionDep
from control_plane.api.errors import DISPATCHER_ANSWERS, declare
from control_plane.dispatch import Cancel, Submit
from control_plane.models import AudioArtifact, Job, JobBatch, JobCreate, JobDetail, JobEventPublic, JobPublic, JobState
from control_plane.tokens import Principal, Role
from voicefleet.audio import wav_header
from voicefleet.protocol import DEVICE_ID_PATTERN
from voicefleet.text.dialects import lookup

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
Submitter = Annotated[Principal, Depends(allow(Role.operator, Role.client))]
_SUBMIT_ANSWERS = declare("unservable", "queue_full", *DISPATCHER_ANSWERS)
FOLLOW_POLL_S = 0.5  # a follower re-reads the job at least this often, wake-up or not


def _public(job: Job | dict) -> JobPublic:
    job_id = job["id"] if isinstance(job, dict) else job.id
    return JobPublic.model_validate(job, update={"audio_url": f"/v1/jobs/{job_id}/audio"})


@router.post("", status_code=201, response_model=JobPublic, responses=_SUBMIT_ANSWERS)
async def submit_job(spec: JobCreate, services: ServicesDep, who: Submitter):
    """Queue a job; it is durable when this returns (its row is committed)."""
    return await _submit([spec], services, who, single=True)


@router.post("/batch", status_code=201, response_model=list[JobPublic], responses=_SUBMIT_ANSWERS)
async def submit_jobs(batch: JobBatch, services: ServicesDep, who: Submitter):
    """Queue up to 1,000 jobs at once, all or none, in order (for bulk producers such as a
    dubbing pipeline: one request and one commit instead of one per job)."""
    return await _submit(batch.jobs, services, who, single=False)


async def _submit(specs: list[JobCreate], services: Services, who: Principal, *, single: bool) -> Response:
    voice_owner = None if who.sees_everything else who.subject  # a client names only its own cloned voices
    # Unservable and QueueFull become answers in api/errors.py.
    rows = await services.dispatcher.ask(Submit(specs, owner=who.subject, voice_owner=voice_owner))
    # Serialised here, once: FastAPI would validate the response model a second time.
    public = [_public(row).model_dump_json() for row in rows]
    body = public[0] if single else "[" + ",".join(public) + "]"
    return Response(body, status_code=201, media_type="application/json")


@router.get("", response_model=list[JobPublic], responses=declare(403))
def list_jobs(session: SessionDep, who: PrincipalDep, state: JobState | None = None,
              device_id: str | None = Query(None, pattern=DEVICE_ID_PATTERN),
              owner: str | None = Query(None, min_length=1, max_length=64,
                                        description="the submitter (viewers, operators and admins only)"),
              dialect: str | None = Query(None, max_length=64, description="a dialect code or name"),
              since: float | None = Query(None, ge=0, le=1e11, description="created at or after (unix seconds)"),
              until: float | None = Query(None, ge=0, le=1e11, description="created at or before (unix seconds)"),
              q: str | None = Query(None, max_length=200, description="in the text (case-insensitive), or the id"),
              limit: int = 100) -> list[JobPublic]:
    """The newest jobs matching every filter given: all of them for viewers, operators and admins, a
    client's own for a client. An unknown value matches nothing; ``limit`` is kept within 1..1000."""
    if not who.sees_everything:
        if owner is not None and owner != who.subject:
            raise HTTPException(403, "owner: a client sees only its own jobs; leave owner out")
        owner = who.subject
    if dialect:
        dialect = found.code if (found := lookup(dialect)) else dialect
    return [_public(j) for j in jobs.list_jobs(session, state=state, owner=owner, device_id=device_id,
                                               dialect=dialect, since=since, until=until, q=q,
                                               limit=min(max(limit, 1), 1000))]


@router.get("/{job_id}", response_model=JobDetail, responses=declare(404))
def get_job(job_id: str, session: SessionDep, who: PrincipalDep) -> JobDetail:
    job = _must(session, job_id, who)
    events = [JobEventPublic.model_validate(e) for e in jobs.job_events(session, job_id=job_id)]
    return JobDetail.model_validate(_public(job), update={"events": events})


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=declare(404, *DISPATCHER_ANSWERS))
async def cancel_job(job_id: str, services: ServicesDep, who: Submitter) -> JobPublic:
    if not who.sees_everything:  # a client may cancel only its own jobs
        await run_in_threadpool(_visible, services, job_id, who)
    job = await services.dispatcher.ask(Cancel(job_id))
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return _public(job)


@router.get("/{job_id}/audio", response_class=StreamingResponse,
            responses={200: {"content": {"audio/wav": {}}}, **declare(404),
                       409: {"description": "job failed or cancelled"}})
async def job_audio(job_id: str, services: ServicesDep, who: PrincipalDep):
    """The WAV of a finished job; while it is still running, its audio streams as it is made. Only
    its submitter, operators and admins may hear it."""
    job, artifact = await run_in_threadpool(_load, services, job_id)
    if job is None or not who.sees_everything and job.owner != who.subject:
        raise HTTPException(404, f"no job {job_id!r}")
    if not who.may_read_audio_of(job.owner):
        raise HTTPException(403, "a job's audio is for its submitter and for operators; this token is a viewer")
    if job.state in (JobState.failed, JobState.cancelled):
        raise HTTPException(409, f"job {job_id} is {job.state}: {job.error_text or 'no audio'}")
    if artifact is not None:
        path = services.store.local_path(artifact.key)
        if path is None:  # a remote store streams it
            return StreamingResponse(_stored(services, artifact), media_type="audio/wav")
        return FileResponse(path, media_type="audio/wav", filename=f"{job_id}.wav")
    return StreamingResponse(_follow(services, job_id), media_type="audio/wav")


async def _stored(services: Services, artifact: AudioArtifact, *, offset: int = 0,
                  header: bool = True) -> AsyncIterator[bytes]:
    """A stored WAV from the store: its header (unless already sent), then its PCM from ``offset``."""
    if header:
        yield wav_header(artifact.sample_rate, artifact.bytes)
    for block in services.store.iter_final(artifact.key, offset=offset):
        yield block


def _must(session: Session, job_id: str, who: Principal) -> Job:
    """The job, if ``who`` may see it (a client sees only its own: others' are 404, not 403, so
    their ids reveal nothing)."""
    job = jobs.get_job(session, job_id=job_id)
    if job is None or not who.sees_everything and job.owner != who.subject:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


def _visible(services: Services, job_id: str, who: Principal) -> None:
    with Session(services.engine) as session:
        _must(session, job_id, who)


def _load(services: Services, job_id: str) -> tuple[Job | None, AudioArtifact | None]:
    with Session(services.engine) as session:
        job = session.get(Job, job_id)
        art = session.exec(select(AudioArtifact).where(AudioArtifact.job_id == job_id)).first()
        return job, art


async def _follow(services: Services, job_id: str) -> AsyncIterator[bytes]:
    """Stream a running job's audio: a WAV header of unknown length, then PCM as chunks land.
    If the job moves to another attempt after audio was sent, the stream ends short (fetch again)."""
    _, wake = entry = services.watch.subscribe(job_id)
    sent, attempt, header = 0, None, False
    try:
        while True:
            wake.clear()
            job, artifact = await run_in_threadpool(_load, services, job_id)
            if job is None or job.state in (JobState.failed, JobState.cancelled):
                return
            if artifact is not None:  # done meanwhile: the rest comes from the stored WAV
                async for block in _stored(services, artifact, offset=sent, header=not header):
                    yield block
                return
            if sent and job.attempt != attempt:
                return
            attempt = job.attempt
            if job.sample_rate and job.state == JobState.running:
                if not header:
                    header = True
                    yield wav_header(job.sample_rate)
                data = services.store.read_partial(job_id, job.attempt, sent)
                if data:
                    sent += len(data)
                    yield data
            try:
                await asyncio.wait_for(wake.wait(), FOLLOW_POLL_S)
            except TimeoutError:
                pass
    finally:
        services.watch.unsubscribe(job_id, entry)
