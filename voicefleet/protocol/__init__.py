"""The wire protocol between the control plane and agents (documented in docs/protocol.md).

No I/O and no heavy imports (pydantic only): both sides and the tests import this alone. One
module per domain: ``topics``, ``speech`` (the one speech specification and what engines offer),
``dialects`` (the catalog), ``jobs``, ``devices``, ``ota``, ``reminders``, and ``codec`` (bytes <->
messages); ``base`` holds what they share. Every message carries the schema version ``v``; ids
make handling a message twice harmless (jobs are keyed by ``(job_id, attempt)``, events by
``event_id``, audio chunks by ``seq``).

Import names from here (``from voicefleet import protocol as p; p.JobAssign``).
"""

from __future__ import annotations

from voicefleet.protocol.base import (
    ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    SAFE_ID_RE,
    SCHEMA_VERSION,
    ErrorInfo,
    Message,
    ProtocolError,
)
from voicefleet.protocol.codec import JobEvent, decode, encode
from voicefleet.protocol.devices import DeviceRecord, DeviceState, ImageState, Telemetry
from voicefleet.protocol.dialects import DIALECT_CATALOG, DIALECTS, Dialect
from voicefleet.protocol.jobs import (
    BAD_TEXT,
    EMPTY_TEXT,
    NOTHING_TO_SPEAK,
    REQUEST_FAULTS,
    UNSUPPORTED,
    AudioChunk,
    JobAssign,
    JobCancel,
    JobDone,
    JobEventBase,
    JobFailed,
    JobReturned,
    JobStarted,
    request_fault,
)
from voicefleet.protocol.ota import TEST_AUDIO_RATE, ActiveModel, OtaCommand, OtaFile, OtaReport, TestAudio
from voicefleet.protocol.reminders import ReminderCommand
from voicefleet.protocol.speech import (
    LANGUAGES,
    MAX_TEXT_CHARS,
    QUALITY_TIERS,
    Capabilities,
    EngineDescriptor,
    EngineOffer,
    SpeechSpec,
    VoiceFigures,
    VoicePrompt,
    split_voice,
    text_too_long,
    tier_rank,
)
from voicefleet.protocol.topics import (
    DEVICE_ID_PATTERN,
    FROM_DEVICE,
    TO_DEVICE,
    TOPIC_ROOT,
    control_subscriptions,
    device_topic,
    parse_device_topic,
)

__all__ = [
    "BAD_TEXT", "EMPTY_TEXT", "NOTHING_TO_SPEAK", "REQUEST_FAULTS", "UNSUPPORTED",
    "DEVICE_ID_PATTERN", "DIALECTS", "DIALECT_CATALOG", "FROM_DEVICE", "ID_PATTERN", "LANGUAGES",
    "MAX_PAYLOAD_BYTES", "MAX_TEXT_CHARS", "QUALITY_TIERS", "TEST_AUDIO_RATE", "SAFE_ID_RE", "SCHEMA_VERSION",
    "TOPIC_ROOT", "TO_DEVICE",
    "ActiveModel", "AudioChunk", "Capabilities", "DeviceRecord", "DeviceState", "Dialect", "EngineDescriptor",
    "EngineOffer",
    "ErrorInfo", "ImageState", "JobAssign", "JobCancel", "JobDone", "JobEvent", "JobEventBase", "JobFailed",
    "JobReturned", "JobStarted", "Message", "OtaCommand", "OtaFile", "OtaReport", "ProtocolError",
    "ReminderCommand", "SpeechSpec", "Telemetry", "TestAudio", "VoiceFigures", "VoicePrompt",
    "control_subscriptions", "decode", "device_topic", "encode", "parse_device_topic", "request_fault",
    "split_voice", "text_too_long", "tier_rank",
]
