"""The frontend benchmark runs and reports both figures (a smoke run, not a timing test; the polyphone
parts, which read all of CPP dev through three systems, have their own tests on 200 sentences)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_frontend_benchmark_reports_text_rate_and_embedding_time():
    pytest.importorskip("resemblyzer")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontend.py"), "--json", "--seconds", "0.3",
                           "--clips", "2", "--parts", "text,embedding"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["text"]["chars_per_s"] > 0 and report["text"]["texts"] >= 60
    assert report["embedding"]["ms_per_clip_mean"] > 0 and report["embedding"]["threads"] == 1
