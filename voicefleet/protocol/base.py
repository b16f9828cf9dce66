"""What every message shares: the schema version, the id patterns, the base class, the error."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from voicefleet.errors import CodedError

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 1 << 20  # a larger message on any topic is dropped unread
# Ids that end up in file names (stored audio, partial files, caches): no separators, no "..".
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SAFE_ID_RE = re.compile(ID_PATTERN)


class ProtocolError(CodedError):
    """A message that cannot be accepted; ``code`` is for machines, ``text`` for people."""


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    v: int = SCHEMA_VERSION


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    text: str
