"""Model bundle updates over the air: the command (control -> device ``ota``), the report of each
stage (device -> control ``event``), and the model a device runs (docs/updates.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
