"""The hub benchmark runs an offline hub process and reports its figures (a smoke run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_hub_benchmark_reports_first_audio_and_memory():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hub.py"), "--json", "--runs", "2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    for path in ("http_cold", "http_cached", "wyoming_cold", "wyoming_cached"):
        assert report[path]["n"] == 2 and report[path]["p50_ms"] > 0
    assert report["http_cached_sources"] == ["cache"]
    assert report["rss_speaking_max_mb"] >= report["rss_idle_mb"] > 0
