"""Devices as the control plane keeps them (from their retained state and telemetry), and the
records they replay from their offline journals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from voicefleet.ids import now


class DeviceBase(SQLModel):
    role: str | None = None
    status: str = "offline"  # online | draining | offline (from the device's retained state)
    engine: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    capabilities: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
    # each engine as placement ranks it (voicefleet.protocol EngineOffer): tier, voices, measured figures
    engines: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)))
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
    # engines: each as placement ranks it (EngineOffer: engine, capabilities, tier, figures) plus "rtf",
    # what the scheduler expects of it on this device (learned from its jobs, else the bundle's figure)
    model: dict[str, Any] | None = None  # the bundle it runs from its slots: model_id, version, slot, pin
    tags: list[str] = []  # what rollouts select it by


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
