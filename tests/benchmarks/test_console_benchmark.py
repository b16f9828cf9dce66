"""The console benchmark loads a filled database in Chromium and measures what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_console_benchmark_measures_weight_speed_and_live_delay_on_a_filled_database():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "console.py"), "--json", "--devices", "20",
                           "--jobs", "300"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)
    assert (r["devices"], r["jobs"]) == (20, 300)
    # the page, its scripts and styles are on the wire the first time; a reload only revalidates them
    assert r["first_load_kb"] > 50 and r["first_load_requests"] >= 10
    assert r["cached_load_kb"] < r["first_load_kb"] / 2
    assert set(r["requests_per_page"]) == {"overview", "devices", "jobs", "playground", "voices", "rollouts", "access"}
    assert 0 < r["usable_s"] and 0 <= r["live_s"] and 0 < r["api_s"]
    assert r["ratios"]["first_load_kb"] == r["first_load_kb"] / 300
