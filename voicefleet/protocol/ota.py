"""Model bundle updates over the air: the command (control -> device ``ota``), the report of each
stage (device -> control ``event``), and the model a device runs (docs/updates.md)."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voicefleet.ids import new_id, now
from voicefleet.protocol.base import ErrorInfo, Message


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


TEST_AUDIO_RATE = 16_000  # what recognisers listen at, and small enough for one message
MAX_TEST_AUDIO_S = 20.0  # a test phrase; a longer one is cut
MAX_TEST_AUDIO_BYTES = int(TEST_AUDIO_RATE * MAX_TEST_AUDIO_S) * 2


class TestAudio(BaseModel):
    """The test phrase as the new model spoke it, for the control plane to judge whether it can be
    understood: ``text`` and 16-bit mono PCM at ``sample_rate``, base64 in ``pcm``. In the JSON, not after
    it, so that the report stays one message that a control plane without a listener reads and ignores."""

    model_config = ConfigDict(frozen=True)
    __test__ = False  # not a pytest class
    text: str = Field(min_length=1, max_length=200)
    sample_rate: int = Field(ge=8000, le=48000)
    pcm: str = Field(max_length=(MAX_TEST_AUDIO_BYTES + 2) // 3 * 4)

    @field_validator("pcm")
    @classmethod
    def _pcm(cls, v: str) -> str:
        try:
            size = len(base64.b64decode(v, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError("pcm must be base64") from None
        if size % 2:
            raise ValueError("pcm must hold whole 16-bit samples")
        return v

    @classmethod
    def of(cls, text: str, pcm: bytes, sample_rate: int) -> TestAudio:
        return cls(text=text, sample_rate=sample_rate, pcm=base64.b64encode(pcm).decode("ascii"))

    def samples(self) -> bytes:
        """The PCM (int16 little-endian)."""
        return base64.b64decode(self.pcm)


class OtaReport(Message):
    """device -> control ``event``: how an OtaCommand went, one report per stage reached. ``report_id``
    makes a redelivered report harmless. ``test`` holds the test synthesis' figures (rtf,
    first_chunk_s, audio_s) once it ran; ``test_audio`` (``tested`` only) what it said."""

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
    test_audio: TestAudio | None = None
    active: ActiveModel | None = None  # what the device runs after this stage
    ts: float = Field(default_factory=now)
