"""The routing benchmark runs end to end on real processes and reports its figures (a smoke run,
not a timing test: the figures of so short a run mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_routing_benchmark_replays_one_trace_under_each_policy():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "routing.py"), "--seconds", "4", "--loads", "0.5",
                           "--policies", "least_conn,latency", "--json"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert len(report["fleet"]) >= 12 and report["capacity_jobs_per_s"] > 0
    runs = report["loads"]["0.5"]["policies"]
    assert set(runs) == {"least_conn", "latency"}
    for run in runs.values():
        assert run["accepted"] == run["jobs"] > 0
        assert run["done"] + run["failed"] + run["lost"] == run["accepted"]
    assert "targets" in report
