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
THROTTLE_C = 90.0  # Orin modules throttle in the 90s; the agent's is AgentSettings.throttle_c


class JetsonTelemetry:
    """GPU/CPU load, temperatures, power and (thermal) throttling from jetson-stats."""

    name = "jtop"

    def __init__(self, jetson: Any, throttle_c: float = THROTTLE_C):
        self._jetson = jetson  # a started ``jtop.jtop``
        self._throttle_c = throttle_c

    @classmethod
    def open(cls, throttle_c: float = THROTTLE_C) -> JetsonTelemetry | None:
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
        return cls(jetson, throttle_c)

    def read(self) -> dict[str, Any]:
        return jetson_fields(self._jetson.stats, psutil.virtual_memory(), self._throttle_c)


def jetson_fields(stats: dict[str, Any], mem: Any, throttle_c: float = THROTTLE_C) -> dict[str, Any]:
    """jtop's ``stats`` (keys like "CPU1", "GPU", "Temp cpu", "Power TOT" in mW) → our fields; a sensor
    at ``throttle_c`` or hotter counts as throttled."""
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
        "throttled": hottest is not None and hottest >= throttle_c,
    }


def default_source(throttle_c: float = THROTTLE_C) -> TelemetrySource:
    return JetsonTelemetry.open(throttle_c) or PsutilTelemetry()
