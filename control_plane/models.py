"""SQLModel tables and their public API shapes: devices, jobs, job events, audio artifacts.

Times are Unix seconds (float): portable across SQLite and PostgreSQL and cheap to subtract
for latency figures. Alembic migrations in control_plane/migrations must match these tables
(a test checks it).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import field_validator
from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from voicefleet.protocol import DEVICE_ID_PATTERN, DIALECTS, LANGUAGES, MAX_TEXT_CHARS, new_id, now
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
    image: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # its RAUC image


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
    model: dict[str, Any] | None = None  # the bundle it runs from its slots: model_id, version, slot, pin
    tags: list[str] = []  # what rollouts select it by


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
    owner: str | None = Field(default=None, index=True, max_length=64)  # the submitting token's subject


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


class ApiToken(SQLModel, table=True):
    """An API token (control_plane/auth.py): only the hash of its secret is kept."""

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    subject: str = Field(max_length=64)  # whom it acts for; a client's jobs belong to its subject
    secret_hash: str = Field(max_length=64)
    rate_per_s: float | None = None  # None: the role's default
    burst: int | None = None
    created_at: float = Field(default_factory=now)
    revoked_at: float | None = None


class ApiTokenCreate(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "operator", "viewer", "client"]
    subject: str | None = Field(default=None, min_length=1, max_length=64, regex=r"^[A-Za-z0-9_.@-]+$")
    rate_per_s: float | None = Field(default=None, gt=0, le=100_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)


class ApiTokenPublic(SQLModel):
    id: str
    name: str
    role: str
    subject: str
    rate_per_s: float | None
    burst: int | None
    created_at: float
    revoked_at: float | None
    token: str | None = None  # only in the answer that created it


# ------------------------------------------------------------------- model registry and rollouts
# (control_plane/registry.py, control_plane/rollouts.py, docs/rollouts.md)


class ModelVersion(SQLModel, table=True):
    """An uploaded, verified bundle version; its files live under the registry's folder."""

    __table_args__ = (UniqueConstraint("model_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    model_id: str = Field(max_length=100)
    version: str = Field(max_length=100)
    engine: str = Field(max_length=64)
    key_id: str = Field(max_length=16)
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))  # all files, manifest and signature
    files: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))  # [{name, size, sha256}]
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    uploaded_at: float = Field(default_factory=now)


class DeviceModel(SQLModel, table=True):
    """What a device with model slots runs (from its state and OTA reports), its tags, and an
    operator's pin. A device is a rollout target only once it has reported a model here."""

    device_id: str = Field(primary_key=True, max_length=64)
    model_id: str | None = Field(default=None, max_length=100)
    version: str | None = Field(default=None, max_length=100)
    slot: str | None = Field(default=None, max_length=1)
    previous_version: str | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    pinned_version: str | None = Field(default=None, max_length=100)  # rollouts leave it on this version
    test: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # of ``version``
    updated_at: float = Field(default_factory=now)


class Rollout(SQLModel, table=True):
    """One bundle version going out to the devices a selector picked, wave by wave (its plan)."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    model_id: str = Field(max_length=100)
    version: str = Field(max_length=100)
    selector: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    plan: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(default="running", index=True, max_length=16)
    phase: int = 0  # 0: canary, k: wave k
    phase_started_at: float | None = None
    soak_until: float | None = None  # this phase's devices are all updated; next phase after this
    reason: str | None = None  # why it halted, paused, was aborted or rolled back
    created_by: str | None = Field(default=None, max_length=64)
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)


class RolloutTarget(SQLModel, table=True):
    """One device of a rollout: its phase, where it stands, and what it returns to on rollback."""

    rollout_id: str = Field(primary_key=True, max_length=32)
    device_id: str = Field(primary_key=True, max_length=64, index=True)
    phase: int
    state: str = Field(default="pending", max_length=16)
    from_version: str | None = Field(default=None, max_length=100)
    baseline: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))  # test figures
    test: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    command_id: str | None = Field(default=None, max_length=64)
    sent_at: float | None = None
    activated_at: float | None = None
    error: str | None = None
    updated_at: float = Field(default_factory=now)


class RolloutEvent(SQLModel, table=True):
    """Every step of a rollout, in order: what the API and the console show."""

    id: int | None = Field(default=None, primary_key=True)
    rollout_id: str = Field(index=True, max_length=32)
    kind: str = Field(max_length=32)
    device_id: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    ts: float = Field(default_factory=now)


# ------------------------------------------------ device enrolment and MQTT users (enrolment.py)


class EnrolmentToken(SQLModel, table=True):
    """A one-time enrolment token: only sha256 of its secret is kept."""

    id: str = Field(primary_key=True, max_length=16)
    secret_hash: str = Field(max_length=64)
    device_id: str | None = Field(default=None, max_length=64)  # None: the device names itself
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=now)
    expires_at: float
    used_at: float | None = None
    used_by: str | None = Field(default=None, max_length=64)  # the device that redeemed it


class EnrolmentTokenCreate(SQLModel):
    device_id: str | None = Field(default=None, regex=DEVICE_ID_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=32)
    ttl_s: float = Field(default=86_400.0, gt=0, le=30 * 86_400)  # how long it may be redeemed


class EnrolmentTokenPublic(SQLModel):
    id: str
    device_id: str | None
    tags: list[str]
    created_at: float
    expires_at: float
    used_at: float | None
    used_by: str | None
    token: str | None = None  # only in the answer that created it


class MqttUser(SQLModel, table=True):
    """A broker login: an enrolled device (may touch only its own topics) or a control plane
    (all of vf/v1/#). The password is kept only as Mosquitto's PBKDF2-SHA512 ``$7$`` hash."""

    username: str = Field(primary_key=True, max_length=64)  # a device's username is its device id
    kind: str = Field(max_length=16)  # device | control
    password_hash: str = Field(max_length=200)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    token_id: str | None = Field(default=None, max_length=16)  # the enrolment token it came with
    created_at: float = Field(default_factory=now)
    revoked_at: float | None = None


class MqttUserPublic(SQLModel):
    username: str
    kind: str
    tags: list[str]
    created_at: float
    revoked_at: float | None


class EnrolRequest(SQLModel):
    token: str = Field(min_length=1, max_length=200)
    device_id: str = Field(regex=DEVICE_ID_PATTERN)


class EnrolResponse(SQLModel):
    device_id: str
    mqtt_username: str
    mqtt_password: str  # given once; the control plane keeps only its hash
    tags: list[str]


class ModelVersionPublic(SQLModel):
    model_id: str
    version: str
    engine: str
    key_id: str
    bytes: int
    files: list[dict[str, Any]]
    uploaded_at: float
    devices: int = 0  # running it now
    manifest: dict[str, Any] | None = None  # in the detail view only


class DeviceModelPublic(SQLModel):
    device_id: str
    model_id: str | None
    version: str | None
    slot: str | None
    previous_version: str | None
    tags: list[str]
    pinned_version: str | None
    test: dict[str, Any] | None
    updated_at: float


class RolloutTargetPublic(SQLModel):
    device_id: str
    phase: int
    state: str
    from_version: str | None
    test: dict[str, Any] | None
    baseline: dict[str, Any] | None
    error: str | None
    sent_at: float | None
    activated_at: float | None
    updated_at: float


class RolloutEventPublic(SQLModel):
    id: int
    kind: str
    device_id: str | None
    detail: dict[str, Any] | None
    ts: float


class RolloutPublic(SQLModel):
    id: str
    model_id: str
    version: str
    selector: dict[str, Any]
    plan: dict[str, Any]
    state: str
    phase: int
    phase_started_at: float | None
    soak_until: float | None
    reason: str | None
    created_by: str | None
    created_at: float
    updated_at: float
    targets: dict[str, int] = {}  # how many devices are in each state
    devices: list[RolloutTargetPublic] | None = None  # in the detail view only
