"""What a device says about itself: its state (retained), its telemetry, the image it booted, and
the records it replays from its offline journal."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voicefleet.ids import now
from voicefleet.protocol.base import ID_PATTERN, Message
from voicefleet.protocol.ota import ActiveModel
from voicefleet.protocol.speech import Capabilities, EngineDescriptor, EngineOffer


class ImageState(BaseModel):
    """The device image a box booted (firmware_images/): its version, and whether its mark-good
    check passed (``state`` good | bad), as firmware_images/mark_good.py recorded it."""

    model_config = ConfigDict(frozen=True)
    image_version: str | None = None
    profile: str | None = None
    slot: str | None = None
    state: str | None = None
    checked_at: str | None = None


class DeviceState(Message):
    """device -> control ``state`` (retained; the last will is the offline form)."""

    type: Literal["state"] = "state"
    device_id: str
    status: Literal["online", "draining", "offline"]
    role: Literal["edge", "cloud"] | None = None
    engine: EngineDescriptor | None = None
    capabilities: Capabilities | None = None  # what any of its engines can do (the union of ``engines``)
    engines: list[EngineOffer] = Field(default_factory=list, max_length=16)  # each engine, ranked by placement
    max_concurrency: int = 1
    agent_version: str = ""
    boot_id: str = ""
    model: ActiveModel | None = None  # the installed model bundle, where the device has slots
    tags: list[str] = Field(default_factory=list, max_length=32)  # "site:berlin", "hw:orin-nano", "customer:acme"
    image: ImageState | None = None  # where the device runs from a RAUC image
    reason: str | None = Field(default=None, max_length=200)  # why it drains or leaves, where it says (a recycle)
    ts: float = Field(default_factory=now)

    def offers(self) -> list[EngineOffer]:
        """Its engines; an agent that predates offers is one engine of unknown quality, ranked lowest."""
        if self.engines or self.engine is None or self.capabilities is None:
            return list(self.engines)
        return [EngineOffer(engine=self.engine, capabilities=self.capabilities, tier="formant")]


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
    gpu_percent: float | None = None  # the busiest of its GPUs (NVML) or the Jetson's GPU
    power_w: float | None = None  # board power (Jetson), its GPUs' power summed (NVML)
    gpu_mem_used_mb: float | None = None  # NVML: its GPUs' memory, used (by every process) and in all
    gpu_mem_total_mb: float | None = None
    gpu_temperature_c: float | None = None  # NVML: the hottest of its GPUs (temperature_c is the host's)
    inflight: int = 0
    queued: int = 0
    rtf: float | None = None  # measured real-time factor (synthesis time / audio time)


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
