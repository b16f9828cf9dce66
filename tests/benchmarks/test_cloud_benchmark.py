"""The cloud benchmark runs CosyVoice3 (the small stand-in, CPU) alone and through the whole path in
one run, and shows the worker's cap: at 4 streams 2 jobs on the worker, the other 2 queued at the
control plane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("resemblyzer")  # the benchmark uploads its voice


def test_cloud_benchmark_measures_engine_and_whole_path_and_the_cap_holds():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cloud.py"), "--json", "--size", "small",
                           "--jobs", "4", "--streams", "1,4"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout)
    assert r["config"] | {"wall_s": 0} == {"device": "cpu", "size": "small", "fp16": False, "jobs": 4,
                                          "streams": [1, 4], "wall_s": 0}
    for part in ("engine", "path"):
        for n in ("1", "4"):
            level = r[part]["levels"][n]
            assert level["jobs"] == 4 and not level["errors"] and level["silent"] == 0, (part, n, level)
            assert 0 < level["first_chunk_ms"]["p50"] <= level["first_chunk_ms"]["p99"]
            assert 0 < level["rtf"]["p50"] and level["audio_s"] > 4 * 3.0  # 15+ characters, 0.2 s each
    assert r["path"]["worker_slots"] == 2, "a cloud worker's default: two jobs a GPU"
    path = r["path"]["levels"]
    assert (path["1"]["on_worker_at_once"], path["1"]["queued_at_control_plane"]) == (1, 0)
    assert path["4"]["on_worker_at_once"] == 2, "the cap of 2 a GPU, reached and held"
    assert path["4"]["queued_at_control_plane"] >= 1, "the rest waited at the control plane"  # 2 unless a POST lags
    assert r["ratios"]["4"]["path_over_engine_first_chunk"] > 0
    assert "engine_first_chunk_over_anchor" not in r["ratios"]["1"], "anchors are for full size on a GPU"
    assert r["anchors_ms"]["vllm_omni_trt_h100_first_audio"] == {"1": 209, "2": 334, "4": 551}
