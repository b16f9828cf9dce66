"""`voicefleet distill --quick`: every stage on a few sentences, with eSpeak NG as the teacher.

Twenty training steps make no voice, so the quick student's audio is checked for length only; that
the committed student speaks is checked against its teacher in test_student_runtime.py. Its
error rate through the recogniser is recorded, and a bound it does not meet refuses to package it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pyworld")


def _distill(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "voicefleet_cli", "distill", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def test_quick_pipeline_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out, key = tmp_path / "bundle", tmp_path / "signing.key"
    done = _distill("--teacher", "espeak", "--quick", "--out", str(out), "--key", str(key))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "bundle.work" / "report.json").read_text())
    assert [s for s in ("corpus", "teacher", "train", "export", "evaluate", "bundle") if s in report] == \
        ["corpus", "teacher", "train", "export", "evaluate", "bundle"]
    assert report["teacher"]["phrases"] >= 6
    assert report["train"]["acoustic"]["steps"] == report["train"]["vocoder"]["steps"] == 20
    assert max(report["export"]["parity_max_abs"].values()) < 1e-4
    evaluation = report["evaluate"]
    assert evaluation["chosen"] in ("fp32", "int8")
    for variant in ("fp32", "int8"):
        assert evaluation[variant]["mcd_db"] > 0 and 0 < evaluation[variant]["rtf_1thread"] < 1
    # the recogniser scored the chosen student and its teacher on the same sentences
    heard = evaluation["intelligibility"]
    assert heard["sentences"] == heard["student"]["sentences"] == heard["teacher"]["sentences"] == 2
    assert evaluation["cer"] == heard["student"]["cer"] > 0.02  # twenty steps make no words

    # the bundle is signed by our key, carries its provenance, and an engine trusting that key speaks with it
    from edge_agent.engines.base import EngineUnavailable, SynthesisRequest
    from edge_agent.engines.student import StudentEngine
    from voicefleet.bundle import load_public_key, verify_bundle

    manifest = verify_bundle(out, [load_public_key(Path(f"{key}.pub"))]).manifest
    assert manifest.provenance["teacher"]["engine"].startswith("espeak")
    assert manifest.provenance["training"]["acoustic"]["steps"] == 20
    assert manifest.extra["runtime"]["variant"] == evaluation["chosen"]
    # the duration map fitted on its training clauses travels with it, as the evaluation applied it
    calibration = manifest.extra["runtime"]["duration_calibration"]
    assert calibration == report["export"]["duration_calibration"] and len(calibration["x"]) >= 2
    assert calibration["fitted_on"]["clauses"] == report["teacher"]["phrases"]
    assert 0 < calibration["leading_pause"] < 100  # the teacher's median clause-initial pause, frames
    # the bundle carries the figures this run measured (written by the pipeline, never by hand)
    for variant in ("fp32", "int8"):
        for figure in ("mcd_db", "speaker_similarity"):
            assert manifest.evaluation[variant][figure] == evaluation[variant][figure], (variant, figure)
    assert manifest.evaluation["cer"] == evaluation["cer"]
    assert manifest.evaluation["intelligibility"]["max_cer"] is None  # --quick: recorded, not gated
    monkeypatch.delenv("VOICEFLEET_TRUSTED_KEYS", raising=False)
    with pytest.raises(EngineUnavailable, match="key"):  # a key nobody trusts yet
        StudentEngine(out)
    monkeypatch.setenv("VOICEFLEET_TRUSTED_KEYS", f"{key}.pub")
    engine = StudentEngine(out)
    assert engine.model.calibration == calibration  # the runtime paces as the evaluation did
    pcm = b"".join(engine.synthesize(SynthesisRequest(text="你好，世界。")))
    assert len(np.frombuffer(pcm, "<i2")) > 2400

    # training resumes from its checkpoints instead of starting over
    again = _distill("--teacher", "espeak", "--quick", "--out", str(tmp_path / "b2"), "--work",
                     str(tmp_path / "bundle.work"), "--stages", "train")
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((tmp_path / "bundle.work" / "report.json").read_text())
    assert report["train"]["acoustic"]["steps"] == 20 and report["train"]["stage_seconds"] < 30
    assert report["train"]["acoustic"]["last_losses"]  # what the checkpoint's last steps logged, not nothing

    # under a bound it does not meet, the same student is not packaged, and the refusal says why
    bound = f"{evaluation['cer'] / 2:.4f}"
    refused = _distill("--teacher", "espeak", "--quick", "--out", str(tmp_path / "b3"), "--work",
                       str(tmp_path / "bundle.work"), "--stages", "bundle", "--max-cer", bound)
    assert refused.returncode == 3, refused.stderr[-3000:]
    assert f"{evaluation['cer']:.1%}" in refused.stderr and "--max-cer" in refused.stderr
    assert not (tmp_path / "b3").exists()


def test_unknown_stage_is_refused(tmp_path: Path):
    bad = _distill("--out", str(tmp_path / "b"), "--stages", "corpus,polish")
    assert bad.returncode != 0 and "polish" in bad.stderr
