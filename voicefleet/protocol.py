"""The wire protocol between the control plane and agents (documented in docs/protocol.md).

No I/O and no heavy imports: both sides and the tests import this alone. Every message carries
the schema version ``v``; ids make handling a message twice harmless (jobs are keyed by
``(job_id, attempt)``, events by ``event_id``, audio chunks by ``seq``).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voicefleet.errors import CodedError

SCHEMA_VERSION = 1
TOPIC_ROOT = "vf/v1"
MAX_PAYLOAD_BYTES = 1 << 20  # a larger message on any topic is dropped unread
MAX_TEXT_CHARS = 5000  # texts of this length or longer are refused at submit
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
# Ids that end up in file names (stored audio, partial files, caches): no separators, no "..".
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SAFE_ID_RE = re.compile(ID_PATTERN)

# Device subtree topic kinds: (kind, direction, qos). See docs/protocol.md.
TO_DEVICE = ("job", "cancel", "ota", "reminder")
FROM_DEVICE = ("state", "telemetry", "event")

LANGUAGES: dict[str, str] = {
    "zh": "Chinese (Mandarin unless a dialect is given)",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "ru": "Russian",
}
# Chinese dialects a job may ask for (the set CosyVoice3 covers). Codes are ISO 639-3 where
# one exists, else the province name.
DIALECTS: dict[str, str] = {
    "yue": "Cantonese",
    "nan": "Minnan (Hokkien)",
    "wuu": "Shanghainese (Wu)",
    "hak": "Hakka",
    "sichuan": "Sichuanese",
    "dongbei": "Northeastern",
    "tianjin": "Tianjin",
    "shandong": "Shandong",
    "henan": "Henan",
    "shaanxi": "Shaanxi",
    "shanxi": "Shanxi",
    "gansu": "Gansu",
    "ningxia": "Ningxia",
    "hubei": "Hubei",
    "hunan": "Hunan",
    "jiangxi": "Jiangxi",
    "yunnan": "Yunnan",
    "guizhou": "Guizhou",
}


class ProtocolError(CodedError):
    """A message that cannot be accepted; ``code`` is for machines, ``text`` for people."""


def now() -> float:
    return time.time()


def new_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------------------------- topics


def device_topic(device_id: str, kind: str) -> str:
    if not _DEVICE_ID_RE.fullmatch(device_id):
        raise ProtocolError("bad_device_id", f"device id {device_id!r} must match {DEVICE_ID_PATTERN}")
    if kind not in TO_DEVICE + FROM_DEVICE:
        raise ProtocolError("bad_topic", f"unknown topic kind {kind!r}")
    return f"{TOPIC_ROOT}/dev/{device_id}/{kind}"


def control_subscriptions() -> list[str]:
    return [f"{TOPIC_ROOT}/dev/+/{kind}" for kind in FROM_DEVICE]


def parse_device_topic(topic: str) -> tuple[str, str]:
    """``vf/v1/dev/D/kind`` -> ``(D, kind)``; anything else is a ProtocolError."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/dev" or not _DEVICE_ID_RE.fullmatch(parts[3]):
        raise ProtocolError("bad_topic", f"topic {topic!r} is not {TOPIC_ROOT}/dev/<device>/<kind>")
    if parts[4] not in TO_DEVICE + FROM_DEVICE:
        raise ProtocolError("bad_topic", f"unknown topic kind {parts[4]!r}")
    return parts[3], parts[4]


# ------------------------------------------------------------------------------- messages


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    v: int = SCHEMA_VERSION


class Capabilities(BaseModel):
    """What an agent's engine can do; the scheduler matches jobs against it."""

    model_config = ConfigDict(frozen=True)
    languages: list[str] = Field(default_factory=list)
    dialects: list[str] = Field(default_factory=list)
    voices: list[str] = Field(default_factory=list)
    streaming: bool = True
    cloning: bool = False
    instructions: bool = False

    def missing_for(self, *, lang: str, dialect: str | None, voice: str | None,
                    instruction: str | None) -> str | None:
        """The first capability this job needs that is absent here, as a phrase, or None."""
        if lang not in self.languages:
            return f"language {lang!r}"
        if dialect and dialect not in self.dialects:
            return f"dialect {dialect!r}"
        if voice and voice not in self.voices and not self.cloning:
            return f"voice {voice!r} (not a preset here; a cloned voice needs an engine that clones)"
        if instruction and not self.instructions:
            return "style instructions"
        return None


class EngineDescriptor(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    version: str
    model: str
    sample_rate: int


class VoicePrompt(BaseModel):
    """A cloned voice's prompt, for engines that clone (CosyVoice3): the clip and its words."""

    model_config = ConfigDict(frozen=True)
    voice_id: str = Field(pattern=ID_PATTERN)
    transcript: str
    audio_url: str  # the control plane's GET /v1/voices/{id}/audio (24 kHz mono WAV)
    sha256: str  # of that WAV file, so a device can cache prompts and check what it fetched


class JobAssign(Message):
    """control -> device ``job``: synthesise this text. ``(job_id, attempt)`` is unique."""

    type: Literal["job"] = "job"
    job_id: str = Field(pattern=ID_PATTERN)
    attempt: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS - 1)
    lang: str = "zh"
    dialect: str | None = None
    voice: str | None = None
    instruction: str | None = None
    prompt: VoicePrompt | None = None  # set when ``voice`` is a cloned (prompt) voice
    lease_s: float = 60.0
    sent_at: float = Field(default_factory=now)


class ReminderCommand(Message):
    """control -> device ``reminder``: add (or replace) or delete one of a hub's reminders. The id is
    the control plane's, so a redelivered command changes nothing."""

    type: Literal["reminder"] = "reminder"
    op: Literal["add", "delete"]
    reminder_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    text: str | None = Field(default=None, max_length=500)
    at: float | None = None  # one-off, unix time
    every_s: float | None = Field(default=None, gt=0)  # recurring
    time: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}$")  # daily, the hub's local time


class OtaFile(BaseModel):
    """One file of a model bundle as the registry stores it (manifest.json and manifest.sig included)."""

    model_config = ConfigDict(frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class OtaCommand(Message):
    """control -> device ``ota``: install a bundle version into the inactive slot and switch to it, or
    roll back to the previous slot. ``command_id`` makes a redelivered command harmless."""

    type: Literal["ota"] = "ota"
    op: Literal["install", "rollback"]
    command_id: str = Field(min_length=8, max_length=64)
    rollout_id: str | None = None
    model_id: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=100)  # install: the new one; rollback: the one to return to
    base_url: str | None = None  # install: file ``name`` is fetched from ``{base_url}/{name}`` (HTTP Range)
    files: list[OtaFile] = Field(default_factory=list, max_length=256)


class ActiveModel(BaseModel):
    """Which bundle a device speaks with, from which slot, and what it can roll back to."""

    model_config = ConfigDict(frozen=True)
    model_id: str
    version: str
    slot: Literal["a", "b"] | None = None
    previous_version: str | None = None


class ImageState(BaseModel):
    """The device image a box booted (firmware_images/): its version, and whether its mark-good
    check passed (``state`` good | bad), as firmware_images/mark_good.py recorded it."""

    model_config = ConfigDict(frozen=True)
    image_version: str | None = None
    profile: str | None = None
    slot: str | None = None
    state: str | None = None
    checked_at: str | None = None


class JobCancel(Message):
    type: Literal["cancel"] = "cancel"
    job_id: str = Field(pattern=ID_PATTERN)
    attempt: int | None = None  # None cancels every attempt of the job
    reason: str = ""


class DeviceState(Message):
    """device -> control ``state`` (retained; the last will is the offline form)."""

    type: Literal["state"] = "state"
    device_id: str
    status: Literal["online", "draining", "offline"]
    role: Literal["edge", "cloud"] | None = None
    engine: EngineDescriptor | None = None
    capabilities: Capabilities | None = None
    max_concurrency: int = 1
    agent_version: str = ""
    boot_id: str = ""
    model: ActiveModel | None = None  # the installed model bundle, where the device has slots
    tags: list[str] = Field(default_factory=list, max_length=32)  # "site:berlin", "hw:orin-nano", "customer:acme"
    image: ImageState | None = None  # where the device runs from a RAUC image
    ts: float = Field(default_factory=now)


class Telemetry(Message):
    """device -> control ``telemetry`` (QoS 0): load and health, every few seconds."""

    type: Literal["telemetry"] = "telemetry"
    device_id: str
    ts: float = Field(default_factory=now)
    source: str = "psutil"
    cpu_percent: float | None = None
    mem_percent: float | None = None
    mem_available_mb: float | None = None
    load1: float | None = None
    temperature_c: float | None = None
    throttled: bool = False
    gpu_percent: float | None = None
    power_w: float | None = None  # board power (Jetson)
    inflight: int = 0
    queued: int = 0
    rtf: float | None = None  # measured real-time factor (synthesis time / audio time)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    text: str


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
    engine: EngineDescriptor
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


class DeviceRecord(Message):
    """device -> control ``event``: something the device did on its own (a phrase it spoke for its
    local API, a reminder, Home Assistant; telemetry gathered while offline), replayed in order from
    its journal. ``record_id`` makes a replay harmless: the control plane keeps each record once."""

    type: Literal["event"] = "event"
    kind: Literal["record"] = "record"
    device_id: str
    record_id: str = Field(min_length=8, max_length=64, pattern=ID_PATTERN)
    seq: int = Field(ge=0)  # the device's journal order
    record: Literal["local_job", "telemetry"]
    ts: float
    body: dict[str, Any] = Field(default_factory=dict)


class OtaReport(Message):
    """device -> control ``event``: how an OtaCommand went, one report per stage reached. ``report_id``
    makes a redelivered report harmless. ``test`` holds the test synthesis' figures (rtf,
    first_chunk_s, audio_s) once it ran."""

    type: Literal["event"] = "event"
    kind: Literal["ota"] = "ota"
    report_id: str = Field(default_factory=new_id)
    device_id: str
    command_id: str
    rollout_id: str | None = None
    model_id: str
    version: str
    stage: Literal["downloading", "verified", "tested", "activated", "failed", "rolled_back"]
    bytes_done: int = Field(default=0, ge=0)
    bytes_total: int = Field(default=0, ge=0)
    error: ErrorInfo | None = None
    test: dict[str, float] = Field(default_factory=dict)
    active: ActiveModel | None = None  # what the device runs after this stage
    ts: float = Field(default_factory=now)


JobEvent = Annotated[
    JobStarted | AudioChunk | JobDone | JobFailed | JobReturned | DeviceRecord | OtaReport,
    Field(discriminator="kind")
]
_EVENT = TypeAdapter(JobEvent)
_BY_KIND: dict[str, type[Message] | TypeAdapter] = {
    "job": JobAssign,
    "cancel": JobCancel,
    "reminder": ReminderCommand,
    "ota": OtaCommand,
    "state": DeviceState,
    "telemetry": Telemetry,
    "event": _EVENT,
}


# ------------------------------------------------------------------------------ encoding


def encode(message: Message, data: bytes | None = None) -> bytes:
    """JSON, then for an audio chunk a NUL byte and the raw PCM (JSON never holds a raw NUL)."""
    head = message.model_dump_json(exclude_none=True).encode()
    return head if data is None else head + b"\0" + data


def decode(kind: str, payload: bytes) -> tuple[Message, bytes | None]:
    """Parse a payload that arrived on a topic of ``kind``; raises ProtocolError."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"{len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    schema = _BY_KIND.get(kind)
    if schema is None:
        raise ProtocolError("bad_topic", f"unknown topic kind {kind!r}")
    head, sep, data = payload.partition(b"\0")
    try:
        raw = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"payload is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "payload JSON is nested too deeply") from None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_json", "payload must be a JSON object")
    if type(raw.get("v")) is not int or raw["v"] != SCHEMA_VERSION:
        raise ProtocolError("bad_version", f"schema version {raw.get('v')!r}, expected {SCHEMA_VERSION}")
    try:
        # strict: a field must have its JSON type ("1" is not an attempt number); unknown fields are
        # ignored so that a newer peer can add some within this schema version
        msg = (schema.validate_python(raw, strict=True) if isinstance(schema, TypeAdapter)
               else schema.model_validate(raw, strict=True))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "kind"
        raise ProtocolError("bad_message", f"{kind}: {where}: {first['msg']}") from None
    if isinstance(msg, AudioChunk):
        if not sep or len(data) % 2:
            raise ProtocolError("bad_audio", "an audio chunk needs an even number of PCM bytes after NUL")
        return msg, data
    return msg, None
