"""Bytes <-> messages: encode, and a strict decode that refuses with a ProtocolError naming why."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from voicefleet.protocol.base import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, Message, ProtocolError
from voicefleet.protocol.devices import DeviceRecord, DeviceState, Telemetry
from voicefleet.protocol.jobs import (
    AudioChunk,
    JobAssign,
    JobCancel,
    JobDone,
    JobFailed,
    JobReturned,
    JobStarted,
)
from voicefleet.protocol.ota import OtaCommand, OtaReport
from voicefleet.protocol.reminders import ReminderCommand

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
