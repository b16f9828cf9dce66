"""Where an agent's health figures come from: jetson-stats (``jtop``) on a Jetson, NVML (``nvidia-ml-py``)
where NVIDIA GPUs are, psutil elsewhere.

``jtop()`` off a Jetson (or without its service) raises ``JtopException``, and ``nvmlInit()`` without an
NVIDIA driver raises ``NVMLError`` (LibraryNotFound, DriverNotLoaded); that is how we know, and the next
source takes over. All give the same ``read()`` fields; the GPU ones only where there is a GPU.
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

    def process_gpu_mb(self) -> float | None:
        """GPU memory this process holds, in MB; None where the source cannot tell (edge_agent/recycle.py)."""
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

    def process_gpu_mb(self) -> float | None:
        return None


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

    def process_gpu_mb(self) -> float | None:
        return None  # the GPU shares the board's memory: mem_percent covers it


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


class NvmlTelemetry:
    """The host's psutil fields plus the GPUs this process may use (``CUDA_VISIBLE_DEVICES``, else all),
    through NVML: utilisation and temperature of the busiest and hottest, memory and power summed (one GPU
    per agent is the usual case, where these are simply its figures); ``throttled`` when the driver slows a
    GPU's clocks for heat (the scheduler's "thermal throttling" gate, as on a hot Jetson)."""

    name = "nvml"

    def __init__(self, nvml: Any, handles: list[Any]):
        self._nvml = nvml  # the initialised ``pynvml`` module
        self._handles = handles
        self._host = PsutilTelemetry()
        self._pid_unseen = False

    @classmethod
    def open(cls) -> NvmlTelemetry | None:
        """The GPUs' telemetry, or None without nvidia-ml-py, an NVIDIA driver or a visible GPU."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            handles = _visible_gpus(pynvml)
        except pynvml.NVMLError as exc:
            log.info("no NVIDIA GPU (NVML: %s); telemetry from psutil", exc)
            return None
        if not handles:
            log.info("no NVIDIA GPU visible (CUDA_VISIBLE_DEVICES=%r); telemetry from psutil",
                     os.environ.get("CUDA_VISIBLE_DEVICES"))
            return None
        return cls(pynvml, handles)

    def read(self) -> dict[str, Any]:
        return {**self._host.read(), **nvml_fields(self._nvml, self._handles)}

    def process_gpu_mb(self) -> float | None:
        """What nvidia-smi shows for this process, summed over its GPUs. In a container with its own PID
        namespace NVML lists host pids, so ours is not among them: then the GPUs' whole used memory, which on
        a GPU worker of its own is this process's plus the driver's share (said once in the log)."""
        nvml, pid = self._nvml, os.getpid()
        procs = [q for h in self._handles for q in nvml.nvmlDeviceGetComputeRunningProcesses(h)]
        mine = [q.usedGpuMemory for q in procs if q.pid == pid and q.usedGpuMemory is not None]
        if mine:
            return round(sum(mine) / 2**20, 1)
        if not self._pid_unseen:
            self._pid_unseen = True
            log.info("NVML lists no GPU process with pid %d (a container's PID namespace?): the GPUs' used "
                     "memory stands for this process's", pid)
        return round(sum(nvml.nvmlDeviceGetMemoryInfo(h).used for h in self._handles) / 2**20, 1)


def _visible_gpus(nvml: Any) -> list[Any]:
    """Handles of the GPUs CUDA will show this process: ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs;
    CUDA stops at the first invalid entry), else every GPU. NVML numbers GPUs in PCI order, as CUDA does
    under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    handles = []
    for item in (v.strip() for v in visible.split(",")):
        try:
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(item)) if item.isdigit()
                           else nvml.nvmlDeviceGetHandleByUUID(item))
        except nvml.NVMLError:
            break
    return handles


def nvml_fields(nvml: Any, handles: list[Any]) -> dict[str, Any]:
    """NVML's readings (memory in bytes, power in mW) → our fields; a figure the GPU does not report
    (power on some boards) is None rather than failing the rest."""

    def each(read: Any) -> list[Any] | None:
        try:
            return [read(h) for h in handles]
        except nvml.NVMLError:
            return None

    util = each(lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
    mem = each(nvml.nvmlDeviceGetMemoryInfo)
    temps = each(lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
    power = each(nvml.nvmlDeviceGetPowerUsage)
    reasons = each(nvml.nvmlDeviceGetCurrentClocksEventReasons)
    hot = nvml.nvmlClocksEventReasonSwThermalSlowdown | nvml.nvmlClocksEventReasonHwThermalSlowdown
    return {
        "gpu_percent": float(max(util)) if util else None,
        "gpu_mem_used_mb": round(sum(m.used for m in mem) / 2**20, 1) if mem else None,
        "gpu_mem_total_mb": round(sum(m.total for m in mem) / 2**20, 1) if mem else None,
        "gpu_temperature_c": float(max(temps)) if temps else None,
        "power_w": round(sum(power) / 1000, 2) if power else None,
        "throttled": any(r & hot for r in reasons) if reasons else False,
    }


def default_source(throttle_c: float = THROTTLE_C) -> TelemetrySource:
    return JetsonTelemetry.open(throttle_c) or NvmlTelemetry.open() or PsutilTelemetry()
