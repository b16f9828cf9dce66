"""The fleet as HTTP routes see it: an immutable copy the dispatcher publishes after each batch
that changed it and at each housekeeping tick, so routes never read the loop's own state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class DeviceStatus:
    id: str
    gate: str | None  # why it may not take new jobs now (None: it may)
    rtf: float | None  # the real-time factor the scheduler expects of its first engine
    rtt_s: float  # its measured round trip
    engine_rtf: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # of each engine

    @property
    def eligible(self) -> bool:
        return self.gate is None


@dataclass(frozen=True)
class FleetSnapshot:
    devices: Mapping[str, DeviceStatus] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, device_id: str) -> DeviceStatus | None:
        return self.devices.get(device_id)

    def eligible(self, device_id: str) -> bool:
        status = self.devices.get(device_id)
        return status is not None and status.eligible
