"""Jobs: what a client submits (JobCreate), the row (Job), its events and its stored audio.

A job's speech fields (text, lang, dialect, voice, instruction) are the protocol's SpeechSpec,
inherited rather than copied: ``job.spec()`` is the spec, and the assignment sent to a device
carries the same fields (control_plane/jobs.py ``assignment``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import StrictFloat, StrictInt, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from voicefleet.ids import new_id, now
from voicefleet.protocol import DIALECTS, LANGUAGES, MAX_TEXT_CHARS, UNSUPPORTED, SpeechSpec, text_too_long
from voicefleet.text.annotations import AnnotationError
from voicefleet.text.annotations import parse as parse_annotations
from voicefleet.text.dialects import lookup
from voicefleet.text.instructions import parse_instruction
from voicefleet.text.speakable import unspeakable

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


class JobCreate(SpeechSpec, SQLModel):
    """What a client submits: a speech spec and how to schedule it. Validation errors name the
    field and what to fix."""

    # What the schema can say of the text and language (schema only: refusals keep the validators' codes
    # and texts below, which also want something speakable and well-formed inline annotations).
    text: str = Field(schema_extra={"json_schema_extra": {"minLength": 1, "maxLength": MAX_TEXT_CHARS - 1}})
    lang: str = Field(default="zh", schema_extra={"json_schema_extra": {"enum": sorted(LANGUAGES)}})
    priority: StrictInt = Field(default=0, ge=-10, le=10)  # strict: true is not 1
    # interactive jobs go ahead of batch jobs (a batch job waiting long enough is served in turn)
    tier: Literal["interactive", "batch"] = "interactive"
    # with dialect "auto": the caller's province or city (GB/T 2260 code or name); its dialect is used
    # when some online engine speaks it, else Mandarin
    region: str | None = Field(default=None, max_length=64)
    deadline_s: StrictFloat | None = Field(default=None, gt=0, le=86400,
                                     description="complete within this many seconds of submission, if possible")
    quality: Literal["best", "fastest"] = Field(
        default="best", description="best: the best-rated voice that can meet the deadline (a worse one only when "
        "no better can); fastest: the soonest completion whatever the voice")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        too_long = text_too_long(v)  # the hub's local API answers the same
        if too_long:
            raise ValueError(too_long)
        try:
            parse_annotations(v)  # inline pinyin / ARPAbet / sound tags must be well-formed
        except AnnotationError as exc:
            raise ValueError(str(exc)) from None
        why = unspeakable(v)  # what every device would refuse (empty_text, nothing_to_speak): refused here
        if why is not None:
            raise PydanticCustomError(why.code, why.text)
        return v

    @field_validator("lang")
    @classmethod
    def _lang(cls, v: str) -> str:
        if v not in LANGUAGES:
            raise ValueError(f"unknown language {v!r}; use one of {sorted(LANGUAGES)}")
        return v

    @field_validator("dialect")
    @classmethod
    def _dialect(cls, v: str | None, info: ValidationInfo) -> str | None:
        """A catalog code or any of its names (粤语, Cantonese, 四川话 …), or "auto" (see ``region``);
        the catalog is Chinese dialects, so any of them needs lang zh."""
        if v is None:
            return v
        found = None if v == "auto" else lookup(v)
        if v != "auto" and found is None:
            raise ValueError(f"unknown dialect {v!r}; use one of {sorted(DIALECTS)}, a name such as 四川话, "
                             "or \"auto\" with a region")
        _needs_chinese(info, "dialect \"auto\" picks a Chinese dialect by region" if found is None
                       else f"dialect {found.code!r} ({found.name_en}) is a Chinese dialect", "the dialect")
        return v if found is None else found.code

    @field_validator("instruction")
    @classmethod
    def _instruction(cls, v: str | None, info: ValidationInfo) -> str | None:
        """An instruction that asks for a dialect ("用粤语说") makes it the job's dialect (control_plane/jobs.py
        ``resolve``): like the field, it needs lang zh."""
        asked = lookup(parse_instruction(v).dialect or "") if v else None
        if asked is not None:
            _needs_chinese(info, f"the instruction asks for {asked.name_en}, a Chinese dialect",
                           "it from the instruction")
        return v


def _needs_chinese(info: ValidationInfo, what: str, it: str) -> None:
    """Refuse a Chinese dialect with another language: no engine offers, say, English in Cantonese
    (every device would answer ``unsupported``)."""
    lang = info.data.get("lang")  # absent when the language itself was refused
    if lang is not None and lang != "zh":
        raise PydanticCustomError(UNSUPPORTED, "{what}: it needs lang \"zh\", not \"{lang}\"; set lang \"zh\", "
                                  "or drop {it} to speak {name}",
                                  {"what": what, "lang": lang, "it": it, "name": LANGUAGES[lang]})


class JobBatch(SQLModel):
    jobs: list[JobCreate] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class JobBase(SpeechSpec, SQLModel):
    priority: int = 0
    tier: str = "interactive"
    deadline_at: float | None = None
    state: str = Field(default=JobState.queued, index=True)
    device_id: str | None = Field(default=None, index=True)
    attempt: int = 0
    created_at: float = Field(default_factory=now, index=True)  # the console reads windows of jobs by these two
    assigned_at: float | None = None
    started_at: float | None = None
    first_chunk_at: float | None = None
    finished_at: float | None = Field(default=None, index=True)
    error_code: str | None = None
    error_text: str | None = None
    sample_rate: int | None = None
    explain: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    quality: str = "best"  # best | fastest (JobCreate)
    # who spoke it: device, engine, version, model, voice, tier, and any fallback (what it fell back from
    # and why); set at assignment, confirmed by the device's done (control_plane/jobs.py)
    spoken_by: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))


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
