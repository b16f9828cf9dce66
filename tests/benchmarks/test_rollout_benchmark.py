"""The rollout benchmark runs end to end (a control plane, simulated devices on a fresh broker) and
reports both runs' figures (a smoke run: so small a fleet's timings mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_rollout_benchmark_rolls_out_gated_and_ungated():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rollout.py"), "--devices", "12", "--mb", "0.2",
                           "--soak-s", "0.3", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    for run in (report["gated"], report["soak_zero"]):
        assert run["state"] == "completed" and run["devices_on_version"] == 12
        assert 200_000 < run["bytes_per_device"] < 210_000  # the bundle once per device, nothing more
        assert run["time_to_full_s"] > 0 and run["control_plane_cpu_s"] > 0
    assert report["gated"]["time_to_full_s"] >= 4 * 0.3  # four soaks: the canary's and three waves'
