"""The recycle guard: a GPU worker whose memory keeps growing between jobs drains and restarts in place.

Upstream CosyVoice's users report GPU memory that grows with every request until out-of-memory
(FunAudioLLM/CosyVoice #1412, #470), as nvidia-smi shows it. So the guard reads what NVML reports for this
process (``TelemetrySource.process_gpu_mb``): torch's allocator and what lies outside it (the CUDA context
as kernels load, cuDNN/cuBLAS workspaces, TensorRT), which ``torch.cuda.memory_reserved`` would miss. It
samples after each job that leaves the agent idle, so no job's working memory counts. Only a restart gives
leaked memory back, so when the last ``samples`` readings are all above the bound and kept growing (none
fell, the last above the first) the agent drains and execs itself again. A level above the bound that
holds still (a model that simply needs more) or a saw-tooth (memory that comes back) is no leak: a fresh
process would be no better off, and the guard only says so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class GrowthRule:
    """Idle readings in, "recycle now" out: ``samples`` readings in a row above ``bound_mb``, none lower
    than the one before, the last higher than the first."""

    def __init__(self, bound_mb: float, samples: int):
        self.bound_mb = bound_mb
        self.samples = samples
        self.run: list[float] = []  # the latest readings above the bound, none lower than the one before

    def add(self, mb: float) -> bool:
        if mb <= self.bound_mb:
            self.run = []
        elif self.run and mb < self.run[-1]:
            self.run = [mb]  # it came down: a saw-tooth starts over
        else:
            self.run = [*self.run, mb][-self.samples:]
        return len(self.run) == self.samples and self.run[-1] > self.run[0]

    def holding_still(self) -> bool:
        """Above the bound for a full run without growing."""
        return len(self.run) == self.samples and self.run[-1] == self.run[0]


def gb(mb: float) -> str:
    return f"{mb / 1024:.3g} GB"


class RecycleGuard:
    """Feeds the rule a reading after each job that leaves the agent idle and calls ``recycle(reason)``
    once, when the rule says so. Job threads call ``job_ended`` concurrently."""

    def __init__(self, read_mb: Callable[[], float | None], rule: GrowthRule, recycle: Callable[[str], None]):
        self._read_mb = read_mb
        self._rule = rule
        self._recycle = recycle
        self._lock = threading.Lock()
        self.jobs = 0  # ended in this process
        self.fired = False
        self._said: set[str] = set()  # what was logged once

    def job_ended(self, *, idle: bool) -> None:
        with self._lock:
            self.jobs += 1
            if not idle or self.fired:
                return
            mb = self._read()
            if mb is None:
                return
            if not self._rule.add(mb):
                if self._rule.holding_still():
                    self._once("still", logging.WARNING, "GPU memory holds at %s, above the %s recycle bound, "
                               "without growing: not recycling (a fresh process would start as high; raise "
                               "VOICEFLEET_RECYCLE_GPU_MB)", gb(mb), gb(self._rule.bound_mb))
                return
            self.fired = True
            reason = (f"recycling: GPU memory {gb(mb)} > {gb(self._rule.bound_mb)} bound, grew from "
                      f"{gb(self._rule.run[0])} over {self._rule.samples} idle samples, after {self.jobs} jobs")
        self._recycle(reason)  # outside the lock: the agent's drain must not wait on the guard

    def _read(self) -> float | None:
        try:
            mb = self._read_mb()
        except Exception as exc:  # a failing sensor must not fail the job thread that asked
            self._once("failed", logging.WARNING, "cannot read this process's GPU memory (%s): no recycling", exc)
            return None
        if mb is None:
            self._once("none", logging.WARNING, "VOICEFLEET_RECYCLE_GPU_MB is set but this agent's telemetry "
                       "reports no GPU memory of its own (no NVIDIA GPU?): no recycling")
        return mb

    def _once(self, key: str, level: int, msg: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, msg, *args)


def recycle_guard(bound_mb: float | None, samples: int, read_mb: Callable[[], float | None],
                  recycle: Callable[[str], None]) -> RecycleGuard | None:
    """The guard the settings ask for (``VOICEFLEET_RECYCLE_GPU_MB``, ``..._SAMPLES``), or None when unset."""
    return RecycleGuard(read_mb, GrowthRule(bound_mb, samples), recycle) if bound_mb else None
