"""The edge TTS benchmark runs end to end and reports every target (a smoke run, not a timing test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"rtf_vs_teacher_1t", "rtf_vs_piper_1t", "first_chunk_30char_ms_1t", "bundle_mb", "peak_rss_mb",
           "mcd_db", "speaker_similarity"}


def test_edge_tts_benchmark_reports_every_target_as_json():
    pytest.importorskip("pyworld")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "edge_tts.py"), "--sentences", "1",
                           "--threads", "1", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    shipped = report["targets"]["shipped"]
    checks = report["targets"][shipped]
    assert set(checks) == TARGETS
    for name, check in checks.items():
        assert check["result"] in ("PASS", "MISS", "SKIP"), (name, check)
        if check["result"] != "SKIP":
            assert isinstance(check["value"], int | float), (name, check)
