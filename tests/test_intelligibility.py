"""Intelligibility: the score (normalise, char_error_rate) on in-memory text, and the real offline
recogniser (Whisper base from the asr extra) on the committed student's speech and on loud noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voicefleet.errors import CodedError
from voicefleet.intelligibility import (
    RecogniserUnavailable,
    char_error_rate,
    gate_sentences,
    heldout_sentences,
    normalise,
    shared_recogniser,
    summary,
)

ROOT = Path(__file__).resolve().parents[1]
STUDENT_MAX_CER = 0.35  # the committed student scores ~13 % on the whole set (docs/quality.md)


# --- the score -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "heard"), [
    ("银行的行长明天来开会。", "銀行的行長明天來開會"),  # traditional and simplified are the same words
    ("请关灯，谢谢！", "请 关灯 谢谢"),  # punctuation and spaces are not heard
    ("下午3:30开会", "下午三点三十分开会。"),  # numbers read the same way on both sides
    ("湿度百分之四十五", "湿度45%"),
    ("二零二五年一月一日", "2025年1月1日"),
    ("尾号是7039", "尾號是七零三九"),
    ("ＯＫ，好的", "ok好的"),  # full width and case
])
def test_the_same_words_written_differently_score_zero(written: str, heard: str):
    assert normalise(written) == normalise(heard)
    assert char_error_rate(written, heard) == 0.0


def test_errors_count_edits_over_the_reference_and_may_exceed_one():
    assert char_error_rate("今天天气很好", "今天天汽很好") == pytest.approx(1 / 6)  # one substitution
    assert char_error_rate("今天天气很好", "今天天气好") == pytest.approx(1 / 6)  # one deletion
    assert char_error_rate("你好", "") == 1.0
    assert char_error_rate("你好", "你好你好你好你好") == 3.0  # a recogniser looping on garbled speech
    with pytest.raises(ValueError, match="nothing that is spoken"):
        char_error_rate("，。！", "你好")


def test_summary_is_the_mean_and_the_share_over_half():
    assert summary([0.1, 0.6, 0.2, 1.5]) == {"sentences": 4, "cer": 0.6, "over_half": 0.5}


def test_heldout_sentences_are_many_and_none_is_in_the_distillation_data():
    ours = heldout_sentences()
    assert len(ours) >= 100 and len(set(ours)) == len(ours)
    assert sum(any(c.isdigit() for c in s) for s in ours) >= 20  # numbers, dates, times, money
    committed = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "models/distill/data").glob("*.txt"))
    assert not [s for s in ours if s.rstrip("。！？") in committed]
    assert set(gate_sentences()) < set(ours) and len(gate_sentences()) >= 20


# --- the recogniser ------------------------------------------------------------------------------

def test_importing_the_measure_loads_no_recogniser():
    code = ("import sys, voicefleet.intelligibility; "
            "print([m for m in ('faster_whisper', 'ctranslate2', 'opencc') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_missing_packages_say_what_to_install():
    code = ("import sys; sys.modules['faster_whisper'] = None\n"
            "from voicefleet.intelligibility import Recogniser, RecogniserUnavailable\n"
            "try:\n    Recogniser()\nexcept RecogniserUnavailable as e:\n    print(e.code, '|', e.text)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    code_, text = done.stdout.strip().split(" | ")
    assert code_ == "recogniser_unavailable" and "voicefleet[asr]" in text
    assert issubclass(RecogniserUnavailable, CodedError)


@pytest.fixture(scope="module")
def recogniser():
    return shared_recogniser()


@pytest.fixture(scope="module")
def student():
    from edge_agent.engines import load_engine

    return load_engine("student")


def _speak(engine, text: str) -> bytes:
    from edge_agent.engines.base import SynthesisRequest

    return b"".join(engine.synthesize(SynthesisRequest(text, lang="zh")))


def test_the_recogniser_understands_the_student(recogniser, student):
    assert shared_recogniser() is recogniser  # loaded once per process
    rate = student.descriptor.sample_rate
    first, second = heldout_sentences()[20], heldout_sentences()[45]  # a reminder with a time; news
    pcm = _speak(student, first)
    heard = recogniser.transcribe(pcm, rate)  # little-endian bytes, 24 kHz, resampled inside
    assert char_error_rate(first, heard) < STUDENT_MAX_CER, heard
    assert recogniser.transcribe(np.frombuffer(pcm, "<i2"), rate) == heard  # an array; and repeatable
    heard = recogniser.transcribe(np.frombuffer(_speak(student, second), "<i2"), rate)
    assert char_error_rate(second, heard) < STUDENT_MAX_CER, heard


def test_loud_noise_like_audio_is_not_understood(recogniser):
    from benchmarks.signals import speechlike

    text = heldout_sentences()[0]
    rng = np.random.default_rng(7)
    noise = np.clip(rng.standard_normal(24000 * 3) * 0.3, -1, 1)  # 3 s of white noise, -10 dBFS RMS
    buzz = speechlike(3.0, 24000, seed=3, level=0.9)  # voiced, formant-shaped, speech-paced: not words
    for audio in (noise, buzz):
        heard = recogniser.transcribe((audio * 32767).astype(np.int16), 24000)
        assert char_error_rate(text, heard) >= 0.5, heard


def test_the_benchmark_compares_engines_in_one_run(tmp_path: Path):
    import shutil

    candidate = tmp_path / "candidate"  # a second bundle beside the committed one, as before a release
    shutil.copytree(ROOT / "models" / "bundles" / "zh-student", candidate)
    version = json.loads((candidate / "manifest.json").read_text())["version"]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--json", "--limit", "1",
                           "--engines", "student,espeak", "--student-bundle", str(candidate)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["sentences"] == 1 and set(report["engines"]) == {"student", "espeak", f"student@{version}"}
    for figures in report["engines"].values():
        assert figures["cer"] >= 0 and 0 <= figures["over_half"] <= 1 and figures["worst"][0]["text"]
    same = report["engines"]["student"], report["engines"][f"student@{version}"]
    assert same[0]["worst"] == same[1]["worst"]  # the same bundle speaks the same words
    not_a_bundle = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--limit", "1",
                               "--engines", "espeak", "--student-bundle", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    assert not_a_bundle.returncode == 2 and "not a bundle" in not_a_bundle.stderr
