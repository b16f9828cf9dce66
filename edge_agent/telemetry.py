"""Where an agent's health figures come from. psutil everywhere; jetson-stats and NVML plug in
as further sources with the same ``read()``."""

from __future__ import annotations

import os
from typing import Any, Protocol

import psutil


class TelemetrySource(Protocol):
    name: str

    def read(self) -> dict[str, Any]:
        """Fields of voicefleet.protocol.Telemetry that this source knows."""
        ...


class PsutilTelemetry:
    name = "psutil"

    def __init__(self) -> None:
        psutil.cpu_percent(None)  # the first call only primes the counter

    def read(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        return {
            "cpu_percent": psutil.cpu_percent(None),
            "mem_percent": mem.percent,
            "mem_available_mb": round(mem.available / 2**20, 1),
            "load1": os.getloadavg()[0],
            "temperature_c": _hottest(),
        }


def _hottest() -> float | None:
    try:
        temps = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    readings = [t.current for group in temps.values() for t in group if t.current]
    return max(readings) if readings else None


def default_source() -> TelemetrySource:
    return PsutilTelemetry()
