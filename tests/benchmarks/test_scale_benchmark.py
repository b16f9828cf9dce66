"""The scale-out benchmark runs one control plane and three behind HAProxy and reports what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from control_plane.relay import _libpq_url

ROOT = Path(__file__).resolve().parents[2]


def test_scale_benchmark_compares_one_and_three_replicas_and_times_a_recovery(pg_server):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--json", "--jobs", "60",
                           "--latency-jobs", "5", "--agents", "2", "--connections", "4",
                           "--pg-url", _libpq_url(pg_server.url)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)
    for setup, n in (("one", 1), ("many", 3)):
        row = r[setup]
        assert (row["replicas"], row["done"], row["lost"]) == (n, 60, 0), row
        assert row["jobs_per_s"] > 0 and row["first_chunk_at_client"]["n"] == 5
        assert len(row["per_replica_cpu_ms_per_job"]) == n and row["control_cpu_ms_per_job"] > 0
        box = row["box"]  # the whole machine's CPU: more than the control planes', split by part
        # busy: a share of every core; the counters and the wall clock are read a moment apart
        assert box["cpu_ms_per_job"] > row["control_cpu_ms_per_job"] and 0 < box["busy"] <= 1.05, box
        assert box["ms_per_job"]["control_planes"] == row["control_cpu_ms_per_job"]
        assert box["ms_per_job"]["agents"] > 0 and box["ms_per_job"]["database_and_rest"] > 0, box
    assert r["ratios"]["cpu_per_job_many_over_one"] == round(
        r["many"]["control_cpu_ms_per_job"] / r["one"]["control_cpu_ms_per_job"], 3)
    recovery = r["many"]["recovery"]
    assert recovery["recovery_s"] is not None and recovery["new_leader"] not in (None, recovery["killed"]), recovery
    assert set(r["targets"]) == {"cpu_per_job_ratio", "recovery_s", "jobs_per_s_one", "jobs_per_s_many"}
