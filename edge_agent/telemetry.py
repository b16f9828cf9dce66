"""Where an agent's health figures come from: jetson-stats (``jtop``) on a Jetson, psutil elsewhere.

``jtop()`` off a Jetson (or without its service) raises ``JtopException``; that is how we know we
are not on one, and psutil takes over. Both give the same ``read()`` fields.
"""

from __future__ import annotations

import logging
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


log = logging.getLogger(__name__)
THROTTLE_C = float(os.environ.get("VOICEFLEET_THROTTLE_C", "90"))  # Orin modules throttle in the 90s


class JetsonTelemetry:
    """GPU/CPU load, temperatures, power and (thermal) throttling from jetson-stats."""

    name = "jtop"

    def __init__(self, jetson: Any):
        self._jetson = jetson  # a started ``jtop.jtop``

    @classmethod
    def open(cls) -> JetsonTelemetry | None:
        """The Jetson's telemetry, or None when this is not a Jetson (or jtop's service is down)."""
        try:
            from jtop import JtopException, jtop
        except ImportError:
            return None
        try:
            jetson = jtop()
            jetson.start()
        except JtopException as exc:
            log.info("not a Jetson (jtop: %s); telemetry from psutil", str(exc).splitlines()[0])
            return None
        return cls(jetson)

    def read(self) -> dict[str, Any]:
        return jetson_fields(self._jetson.stats, psutil.virtual_memory())


def jetson_fields(stats: dict[str, Any], mem: Any) -> dict[str, Any]:
    """jtop's ``stats`` (keys like "CPU1", "GPU", "Temp cpu", "Power TOT" in mW) → our fields."""
    cpus = [v for k, v in stats.items() if k.upper().startswith("CPU") and isinstance(v, int | float)]
    temps = [v for k, v in stats.items() if k.lower().startswith("temp") and isinstance(v, int | float) and v > -50]
    hottest = max(temps) if temps else None
    power = stats.get("Power TOT")
    return {
        "cpu_percent": round(sum(cpus) / len(cpus), 1) if cpus else None,
        "gpu_percent": stats.get("GPU"),
        "mem_percent": mem.percent,
        "mem_available_mb": round(mem.available / 2**20, 1),
        "load1": os.getloadavg()[0],
        "temperature_c": hottest,
        "power_w": round(power / 1000, 2) if isinstance(power, int | float) else None,
        "throttled": hottest is not None and hottest >= THROTTLE_C,
    }


def default_source() -> TelemetrySource:
    return JetsonTelemetry.open() or PsutilTelemetry()
