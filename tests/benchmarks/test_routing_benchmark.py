"""The routing benchmark runs end to end on real processes and reports its figures (a smoke run,
not a timing test: the figures of so short a run mean nothing, but losing a job is a failure)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.load import Arrival
from benchmarks.routing import summarize

ROOT = Path(__file__).resolve().parents[2]


def _row(job_id: str, state: str) -> dict:
    finished = state in ("done", "failed", "cancelled")
    return {"id": job_id, "state": state, "device_id": "t-edge0" if state == "done" else None,
            "created_at": 100.0, "assigned_at": 100.1, "finished_at": 101.0 if finished else None,
            "explain": {"policy": "latency"}}


def test_a_job_whose_row_is_missing_or_not_final_counts_as_lost():
    """Lost is counted from the accepted ids, not as what remains of the others."""
    found = {"a": _row("a", "done"), "b": _row("b", "running"), "d": _row("d", "failed"),
             "e": _row("e", "queued")}
    sent = {"ids": ["a", "b", "c", "d", "e"], "statuses": {"201": 5}, "lag_p99_ms": 1.0}
    figures = summarize(found, [Arrival(0.0, "字")] * 5, sent, "t", 0.0)
    assert figures["accepted"] == 5 and figures["done"] == 1 and figures["failed"] == 1
    assert figures["lost"] == 3 and sorted(figures["lost_ids"]) == ["b", "c", "e"]
    everything = summarize({i: _row(i, "done") for i in sent["ids"]}, [Arrival(0.0, "字")] * 5, sent, "t", 0.0)
    assert everything["lost"] == 0 and everything["done"] == 5


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
        # at half the fleet's capacity with two minutes to drain, every accepted job finishes
        assert run["lost"] == 0 and run["done"] == run["accepted"], run.get("lost_ids")
    assert "targets" in report
