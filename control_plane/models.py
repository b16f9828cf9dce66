"""SQLModel tables and their public API shapes: devices, jobs, job events, audio artifacts.

Times are Unix seconds (float): portable across SQLite and PostgreSQL and cheap to subtract
for latency figures. Alembic migrations in control_plane/migrations must match these tables
(a test checks it).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import field_validator
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from voicefleet.protocol import DIALECTS, LANGUAGES, MAX_TEXT_CHARS, new_id, now
from voicefleet.text.annotations import AnnotationError
from voicefleet.text.annotations import parse as parse_annotations
from voicefleet.text.dialects import lookup

MAX_BATCH_JOBS = 1000


class JobState(StrEnum):
    queued = "queued"
    assigned = "assigned"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


ACTIVE_STATES = (JobState.assigned, JobState.running)
TERMINAL_STATES = (JobState.done, JobState.failed, JobState.cancelled)


# ---------------------------------------------------------------------------------- devices


class DeviceBase(SQLModel):
    role: str | None = None
    status: str = "offline"  # online | draining | offline (from the device's retained state)
    engine: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    capabilities: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    max_concurrency: int = 1
    agent_version: str = ""
    last_seen_at: float | None = None
    telemetry: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))


class Device(DeviceBase, table=True):
    id: str = Field(primary_key=True, max_length=64)
    cordoned: bool = False  # by an operator: no new jobs
    boot_id: str = ""
    created_at: float = Field(default_factory=now)


class DevicePublic(DeviceBase):
    id: str
    inflight: int = 0
    cordoned: bool = False
    eligible: bool = False  # may take new jobs now
    gate: str | None = None  # why not, when it may not
    rtf: float | None = None  # real-time factor the scheduler expects of it
    rtt_s: float | None = None  # measured round trip


# ------------------------------------------------------------------------------------- jobs


class JobCreate(SQLModel):
    """What a client submits. Validation errors name the field and what to fix."""

    text: str
    lang: str = "zh"
    dialect: str | None = None
    voice: str | None = None
    instruction: str | None = None
    priority: int = Field(default=0, ge=-10, le=10)
    # interactive jobs go ahead of batch jobs (a batch job waiting long enough is served in turn)
    tier: Literal["interactive", "batch"] = "interactive"
    # with dialect "auto": the caller's province or city (GB/T 2260 code or name); its dialect is used
    # when some online engine speaks it, else Mandarin
    region: str | None = Field(default=None, max_length=64)
    deadline_s: float | None = Field(default=None, gt=0, le=86400,
                                     description="complete within this many seconds of submission, if possible")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is empty: give the words to speak")
        if len(v) >= MAX_TEXT_CHARS:
            raise ValueError(f"text has {len(v)} characters; split it into jobs under {MAX_TEXT_CHARS}")
        try:
            parse_annotations(v)  # inline pinyin / ARPAbet / sound tags must be well-formed
        except AnnotationError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("lang")
    @classmethod
    def _lang(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"unknown language {v!r}; use one of {sorted(LANGUAGES)}")
        return v

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, v: str | None) -> str | None:
        """A catalog code or any of its names (粤语, Cantonese, 四川话 …), or "auto" (see ``region``)."""
        if v is None or v == "auto":
            return v
        found = lookup(v)
        if found is None:
            raise ValueError(f"unknown dialect {v!r}; use one of {sorted(DIALECTS)}, a name such as 四川话, "
                             "or \"auto\" with a region")
        return found.code


class JobBatch(SQLModel):
    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class JobBase(SQLModel):
    text: str
    lang: str = "zh"
    dialect: str | None = None
    voice: str | None = None
    instruction: str | None = None
    priority: int = 0
    tier: str = "interactive"
    deadline_at: float | None = None
    state: str = Field(default=JobState.queued, index=True)
    device_id: str | None = Field(default=None, index=True)
    attempt: int = 0
    created_at: float = Field(default_factory=now)
    assigned_at: float | None = None
    started_at: float | None = None
    first_chunk_at: float | None = None
    finished_at: float | None = None
    error_code: str | None = None
    error_text: str | None = None
    sample_rate: int | None = None
    explain: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))


class Job(JobBase, table=True):
    __table_args__ = (Index("ix_job_queue", "state", "tier", "priority", "created_at"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    max_attempts: int = 3
    lease_expires_at: float | None = None


class JobPublic(JobBase):
    id: str
    audio_url: str | None = None


class JobEvent(SQLModel, table=True):
    """Every transition of a job, in order: the audit trail and each attempt's reason."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(index=True, max_length=32)
    attempt: int = 0
    kind: str
    device_id: str | None = None
    event_id: str | None = Field(default=None, unique=True, max_length=32)  # device event id
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    ts: float = Field(default_factory=now)


class JobEventPublic(SQLModel):
    attempt: int
    kind: str
    device_id: str | None
    detail: dict[str, Any] | None
    ts: float


class AudioArtifact(SQLModel, table=True):
    """One stored audio per job: a second result for the same job is never stored."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(unique=True, max_length=32)
    key: str  # where the audio store keeps it
    sample_rate: int
    samples: int
    bytes: int
    sha256: str
    engine: str
    model: str
    created_at: float = Field(default_factory=now)


class JobDetail(JobPublic):
    events: list[JobEventPublic] = []


# ----------------------------------------------------------------------------------- voices


class Voice(SQLModel, table=True):
    """A stored voice: today only ``prompt`` voices (an uploaded clip for zero-shot cloning); preset
    voices come from what the devices' engines advertise and are not stored."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=64)
    kind: str = "prompt"  # prompt | preset
    transcript: str | None = None  # the words spoken in the prompt; required for prompt voices
    consent: str  # who is speaking and how they agreed to the use of their voice
    content_sha256: str | None = Field(default=None, unique=True, max_length=64)  # of the normalised samples
    duration_s: float | None = None
    sample_rate: int | None = None  # as uploaded; stored audio is 24 kHz mono
    snr_db: float | None = None
    embedding: list[float] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # 256-d, unit
    audio_key: str | None = None  # voices/<hash[:2]>/<hash>.wav under the audio dir
    created_at: float = Field(default_factory=now)


class VoicePublic(SQLModel):
    id: str  # a preset's id is its name: what a job's ``voice`` field takes
    name: str
    kind: Literal["preset", "prompt"]
    transcript: str | None = None
    consent: str | None = None
    content_sha256: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    snr_db: float | None = None
    created_at: float | None = None
    audio_url: str | None = None
    advertised_by: list[str] = []  # presets: devices whose engines list it
    servable_by: list[str] = []  # devices that could take a job with this voice now


class VoiceSimilar(SQLModel):
    similarity: float  # cosine of the speaker embeddings, 1 = same voice
    voice: VoicePublic


class DeviceRecord(SQLModel, table=True):
    """What a device did on its own (a phrase for its local API, a reminder; offline telemetry),
    replayed from its journal: kept once per ``id`` however often it arrives."""

    id: str = Field(primary_key=True, max_length=64)  # the device's record id
    device_id: str = Field(index=True, max_length=64)
    seq: int  # the device's journal order
    record: str  # local_job | telemetry
    ts: float  # when it happened, on the device's clock
    body: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    received_at: float = Field(default_factory=now)
