"""The recycle guard: its growth rule on readings, and a real agent process on the real broker that drains
and restarts in place (same pid, a new boot) when its GPU memory keeps growing past the bound.

There is no NVIDIA GPU here: ``GrowingGpuMemoryStandIn`` stands in for NVML's per-process reading, as a
telemetry source whose ``process_gpu_mb`` grows at every reading. Run as a script, this file is that agent
(``python tests/edge_agent/test_recycle.py``: what ``voicefleet agent`` does, with the stand-in and the
benchmark-only ``timed`` engine), so its restart re-executes the same command line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from devicewatch import DeviceWatch
from services import wait_for

from edge_agent.engines.benchmark_only import BenchmarkTimedEngine
from edge_agent.recycle import GrowthRule, RecycleGuard, recycle_guard
from edge_agent.telemetry import PsutilTelemetry
from voicefleet import protocol as p
from voicefleet.broker import MosquittoBroker
from voicefleet.processes import terminate

TESTS = Path(__file__).resolve().parents[1]


class GrowingGpuMemoryStandIn(PsutilTelemetry):
    """Stands in for NVML's reading of this process's GPU memory (no NVIDIA GPU here): ``start_mb``, then
    ``step_mb`` more at every reading, each appended to ``<dir>/readings``. At reading ``hold_at`` it first
    touches ``<dir>/holding`` and waits for ``<dir>/release``, so a test can hand the agent a job while the
    guard samples. The host's fields come from psutil."""

    name = "gpu-standin"

    def __init__(self, start_mb: float, step_mb: float, folder: Path | None = None, hold_at: int = 0):
        super().__init__()
        self.start_mb, self.step_mb, self.folder, self.hold_at = start_mb, step_mb, folder, hold_at
        self.readings = 0

    def process_gpu_mb(self) -> float:
        self.readings += 1
        mb = self.start_mb + self.step_mb * (self.readings - 1)
        if self.folder:
            if self.readings == self.hold_at:
                (self.folder / "holding").touch()
                deadline = time.monotonic() + 120
                while not (self.folder / "release").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            with open(self.folder / "readings", "a") as f:
                f.write(f"{mb}\n")
        return mb


# -- the rule ------------------------------------------------------------------------------------------


def feed(readings: list[float], bound_mb: float = 8192, samples: int = 3) -> list[bool]:
    rule = GrowthRule(bound_mb, samples)
    return [rule.add(mb) for mb in readings]


def test_memory_growing_past_the_bound_recycles_on_the_third_sample_above_it():
    assert feed([7000, 8000, 8300, 8600, 8900]) == [False, False, False, False, True]
    assert feed([9000, 9000, 9001]) == [False, False, True]  # held, then grew: it keeps growing


def test_flat_memory_never_recycles_even_above_the_bound():
    assert not any(feed([9000.0] * 20))  # a model that simply needs more: a fresh process starts as high
    assert not any(feed([5000.0] * 20))


def test_saw_tooth_memory_never_recycles():
    tooth = [8500, 8800, 8400, 8700, 8300, 8900, 8200, 8600] * 3  # every job's memory comes back
    assert not any(feed(tooth))
    assert not any(feed([7000, 9000, 9500, 7000, 9000, 9500, 7000]))  # down below the bound between


def test_growth_below_the_bound_never_recycles():
    assert not any(feed([1000 + 100 * i for i in range(70)]))  # up to 7900 MB, all under 8192


class GuardProbe:
    def __init__(self, readings: list[float | None]):
        self.readings, self.reasons = list(readings), []

    def read(self) -> float | None:
        return self.readings.pop(0)

    def guard(self, bound_mb: float = 8192, samples: int = 3) -> RecycleGuard:
        return recycle_guard(bound_mb, samples, self.read, self.reasons.append)


def test_the_guard_samples_only_when_a_job_leaves_the_agent_idle_and_fires_once():
    probe = GuardProbe([8300, 8600, 9300, 9900])
    guard = probe.guard()
    guard.job_ended(idle=False)  # another job still runs: its working memory would count
    assert probe.readings == [8300, 8600, 9300, 9900]
    for _ in range(3):
        guard.job_ended(idle=True)
    assert probe.reasons == ["recycling: GPU memory 9.08 GB > 8 GB bound, grew from 8.11 GB over 3 idle samples, "
                             "after 4 jobs"]
    guard.job_ended(idle=True)
    assert len(probe.reasons) == 1 and probe.readings == [9900]  # draining now: no more readings


def test_no_bound_no_guard_and_no_reading_no_recycle(caplog: pytest.LogCaptureFixture):
    assert recycle_guard(None, 3, lambda: 1.0, print) is None
    probe = GuardProbe([None] * 5)
    guard = probe.guard()
    with caplog.at_level(logging.WARNING, "edge_agent.recycle"):
        for _ in range(5):
            guard.job_ended(idle=True)
    assert probe.reasons == [] and not guard.fired
    assert [r.message for r in caplog.records].count(
        "VOICEFLEET_RECYCLE_GPU_MB is set but this agent's telemetry reports no GPU memory of its own "
        "(no NVIDIA GPU?): no recycling") == 1

    def broken() -> float:
        raise RuntimeError("NVML: GPU is lost")

    failing = recycle_guard(8192, 3, broken, probe.reasons.append)
    failing.job_ended(idle=True)  # the job thread that asked carries on
    assert probe.reasons == []


# -- a real agent --------------------------------------------------------------------------------------


class Watch(DeviceWatch):
    """A device's states and events (tests/devicewatch.py); sends it jobs."""

    def job(self, text: str) -> str:
        job = p.JobAssign(job_id=uuid.uuid4().hex, attempt=1, text=text)
        self.send("job", job)
        return job.job_id

    def done(self, job_id: str) -> p.JobDone:
        end = self.find(f"job {job_id} to end", lambda m: isinstance(m, p.JobDone | p.JobFailed | p.JobReturned)
                        and m.job_id == job_id)
        assert isinstance(end, p.JobDone), end
        return end

    def state(self, status: str, boot_id: str | None = None, other_than: str | None = None) -> p.DeviceState:
        return self.find(f"state {status}", lambda m: isinstance(m, p.DeviceState) and m.status == status
                         and boot_id in (None, m.boot_id) and m.boot_id != other_than)

    def index(self, message: p.Message) -> int:
        return next(i for i, m in enumerate(self.seen) if m is message)


def test_an_agent_whose_gpu_memory_keeps_growing_drains_finishes_its_job_and_restarts_in_place(
        tmp_path: Path, mqtt_broker: MosquittoBroker):
    device, gauge = f"gpu-{uuid.uuid4().hex[:6]}", tmp_path / "gauge"
    gauge.mkdir()
    watch = Watch(mqtt_broker.url, device)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "VOICEFLEET_HOME": str(tmp_path), "VOICEFLEET_DEVICE_ID": device, "VOICEFLEET_MQTT_URL": mqtt_broker.url,
           "VOICEFLEET_ROLE": "cloud", "VOICEFLEET_ENGINE": "timed", "VOICEFLEET_MAX_CONCURRENCY": "2",
           "VOICEFLEET_TIMED_RTF": "1", "VOICEFLEET_RECYCLE_GPU_MB": "2048", "VOICEFLEET_RECYCLE_SAMPLES": "3",
           "STANDIN_GAUGE_DIR": str(gauge)}
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen([sys.executable, __file__], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        first = watch.state("online")
        for n in (1, 2):  # two idle samples above the bound, growing: one short of recycling
            watch.done(watch.job("你好"))
            wait_for(lambda n=n: len(_readings(gauge)) == n, f"idle sample {n}")
        watch.done(watch.job("你好"))
        wait_for(lambda: (gauge / "holding").exists(), "the third sample to be under way")
        # a long job (5.3 s of audio at RTF 1) arrives as the guard samples: it is running when the guard decides
        long_text = "请在会议前准备好材料。" * 8
        long_job = watch.job(long_text)
        watch.find("the long job's first audio", lambda m: isinstance(m, p.AudioChunk) and m.job_id == long_job)
        (gauge / "release").touch()

        draining = watch.state("draining", boot_id=first.boot_id)
        assert draining.reason.startswith("recycling: GPU memory 2.25 GB > 2 GB bound, grew from 2.05 GB over 3 idle "
                                          "samples, after 3 jobs"), draining.reason
        finished = watch.done(long_job)  # finished in the drain, whole
        assert finished.samples == BenchmarkTimedEngine().audio_samples(long_text)
        offline = watch.state("offline", boot_id=first.boot_id)
        assert offline.reason == draining.reason
        again = watch.state("online", other_than=first.boot_id)
        assert watch.index(draining) < watch.index(finished) < watch.index(offline) < watch.index(again)
        assert agent.poll() is None  # the same process (pid), executed again: a new boot
        watch.done(watch.job("你好"))  # and it takes jobs again
    finally:
        terminate(agent, timeout=60)
        watch.mqtt.stop()
    out = (tmp_path / "agent.log").read_text()
    assert agent.returncode == 0, out[-3000:]
    assert out.count(f"agent {device} (cloud, engine timed-benchmark, 2 slots) is up") == 2, out[-3000:]
    assert "recycling: GPU memory 2.25 GB > 2 GB bound" in out


def _readings(gauge: Path) -> list[str]:
    return (gauge / "readings").read_text().split() if (gauge / "readings").exists() else []


def main() -> int:
    """``voicefleet agent`` with the benchmark-only engines and the stand-in for NVML's GPU memory."""
    from edge_agent.agent import Agent
    from edge_agent.config import AgentSettings
    from edge_agent.engines.benchmark_only import WITH_BENCHMARKS

    settings = AgentSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gpu = GrowingGpuMemoryStandIn(2100, 100, Path(os.environ["STANDIN_GAUGE_DIR"]), hold_at=3)
    Agent(settings, telemetry=gpu, engines=WITH_BENCHMARKS).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
