"""What the cluster benchmarks share: a quiet one-box Cluster of child processes, which of its
agents are online, the children's last log lines, CPU seconds per group of processes, and the
control plane's jobs by state."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from benchmarks.report import ADMIN_TOKEN
from voicefleet_cli.onebox import Cluster, get_json

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = ("done", "failed", "cancelled")


def bench_cluster(home: Path, mqtt_url: str, **env: str) -> Cluster:
    """A Cluster whose children log warnings only and import this checkout (run without installing)."""
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return Cluster(home, mqtt_url=mqtt_url,
                   env={"VOICEFLEET_LOG_LEVEL": "WARNING", "PYTHONPATH": pythonpath, **env})


def online(api: str, device_ids: set[str] | list[str]) -> int:
    """How many of ``device_ids`` the control plane sees online."""
    devices = get_json(f"{api}/v1/devices", ADMIN_TOKEN) or []
    return sum(1 for d in devices if d.get("status") == "online" and d.get("id") in device_ids)


def log_tails(home: Path, lines: int) -> str:
    """The children's last log lines (their home is a temp dir that is about to go)."""
    out = []
    for path in sorted(home.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            out.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(out)


class CpuMeter:
    """CPU seconds used by groups of processes between start() and stop(); with ``box``, also the whole
    machine's busy CPU seconds (every process, PostgreSQL's per-connection backends included)."""

    def __init__(self, groups: dict[str, list[int]], *, box: bool = False):
        self.procs = {g: [psutil.Process(pid) for pid in pids] for g, pids in groups.items()}
        self.box = box
        self.t0: dict[str, float] = {}

    @staticmethod
    def _cpu(procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    @staticmethod
    def _busy() -> float:
        # Linux counts guest time inside user and nice already, and steal is the hypervisor's, not ours.
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.t0 = {g: self._cpu(ps) for g, ps in self.procs.items()}
        if self.box:
            self.t0["box"] = self._busy()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        out = {g: round(self._cpu(ps) - self.t0[g], 2) for g, ps in self.procs.items()}
        if self.box:
            out["box"] = round(self._busy() - self.t0["box"], 2)
        out["wall_s"] = round(wall, 2)
        return out


async def terminal_count(client: httpx.AsyncClient) -> dict[str, int]:
    """Jobs by state, from the control plane's Prometheus gauges (one cheap GROUP BY)."""
    r = await client.get("/metrics")
    counts: dict[str, int] = {}
    for line in r.text.splitlines():
        if line.startswith('voicefleet_jobs{state="'):
            state = line.split('"')[1]
            counts[state] = int(float(line.rsplit(" ", 1)[1]))
    return counts


async def wait_final(client: httpx.AsyncClient, accepted: int, *, log: Callable[[str], None], base: int = 0,
                     stall_s: float = 30.0, poll_s: float = 0.25, timeout_s: float | None = None) -> None:
    """Until ``accepted`` jobs more than ``base`` are final, none finished for ``stall_s``, or
    ``timeout_s`` passed (rates come from job rows, not from this poll)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while deadline is None or time.monotonic() < deadline:
        counts = await terminal_count(client)
        finished = sum(counts.get(s, 0) for s in TERMINAL) - base
        if finished >= accepted:
            return
        if finished != last:
            last, last_change = finished, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            log(f"no job finished for {stall_s:.0f}s: {finished}/{accepted}")
            return
        await asyncio.sleep(poll_s)
    log(f"gave up waiting after {timeout_s:.0f}s")
