"""Evaluation stage: the exported student (fp32 and int8) against its teacher on held-out text.

Both speak the same held-out sentences phrase by phrase (with the same pauses); the figures
are MCD-DTW, F0 RMSE and speaker similarity (``evaluate.py``) and the single-thread real-time
factor of each. The int8 graphs ship only when they are at least 10% faster *and* no worse
than fp32 by more than 0.2 dB MCD: published int8 TTS models often run slower on CPUs, so it
is measured; and dynamic int8 quantises activations per call, so streamed windows are no
longer bit-identical to a whole-clause run, which a few percent of speed does not buy.

Then the chosen variant and the teacher speak the intelligibility gate's sentences and the
offline recogniser scores both (``intelligibility.py``): ``cer`` is the student's figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edge_agent.engines.student import StudentModel
from models.distill import intelligibility
from models.distill.corpus import heldout_sentences
from models.distill.teachers import SAMPLE_RATE, load_teacher
from voicefleet.text.mandarin import phrases

MCD_TOLERANCE_DB = 0.2
INT8_MIN_SPEEDUP = 1.10


def _speak(render, sentence: str) -> tuple[np.ndarray, float]:
    """(audio, synthesis seconds) of ``sentence`` through ``render(phrase) -> float32``."""
    pieces, spent = [], 0.0
    for phrase in phrases(sentence):
        start = time.perf_counter()
        pieces.append(render(phrase))
        spent += time.perf_counter() - start
        pieces.append(np.zeros(int(SAMPLE_RATE * phrase.pause_after_s), np.float32))
    return np.concatenate(pieces), spent


def evaluate_student(work: Path, teacher_name: str, quick: bool = False) -> dict:
    from models.distill.evaluate import evaluate_pairs

    export = json.loads((work / "report.json").read_text())["export"]
    config, calibration = export["config"], export.get("duration_calibration")
    sentences = heldout_sentences()[: 2 if quick else None]
    teacher = load_teacher(teacher_name, threads=1)
    reference, teacher_s = zip(*(_speak(lambda p: teacher.render(p).audio, s) for s in sentences), strict=True)
    audio_s = sum(len(a) for a in reference) / SAMPLE_RATE
    report: dict = {"sentences": len(sentences), "teacher_audio_s": round(audio_s, 2),
                    "teacher_rtf_1thread": round(sum(teacher_s) / audio_s, 4)}
    models = {}
    for variant in ("fp32", "int8"):
        model = models[variant] = StudentModel(work, config, threads=1, variant=variant, calibration=calibration)
        model.synthesize(phrases(sentences[0])[0].ids)  # warm-up: first runs allocate
        spoken, spent = zip(*(_speak(lambda p, m=model: m.synthesize(p.ids), s) for s in sentences), strict=True)
        student_s = sum(len(a) for a in spoken) / SAMPLE_RATE
        figures = evaluate_pairs(list(zip(reference, spoken, strict=True)), SAMPLE_RATE)
        report[variant] = {"rtf_1thread": round(sum(spent) / student_s, 5), "audio_s": round(student_s, 2),
                           **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}}
        if variant == "fp32":
            _examples(work, reference[0], spoken[0])
    fp32, int8 = report["fp32"], report["int8"]
    faster = int8["rtf_1thread"] * INT8_MIN_SPEEDUP <= fp32["rtf_1thread"]
    report["chosen"] = "int8" if faster and int8["mcd_db"] <= fp32["mcd_db"] + MCD_TOLERANCE_DB else "fp32"
    chosen = models[report["chosen"]]
    report["intelligibility"] = intelligibility.measure(
        lambda s: _speak(lambda p: teacher.render(p).audio, s)[0],
        lambda s: _speak(lambda p: chosen.synthesize(p.ids), s)[0], SAMPLE_RATE, quick=quick)
    if "student" in report["intelligibility"]:
        report["cer"] = report["intelligibility"]["student"]["cer"]
    return report


def _examples(work: Path, teacher: np.ndarray, student: np.ndarray) -> None:
    import soundfile as sf

    out = work / "examples"
    out.mkdir(exist_ok=True)
    sf.write(out / "teacher.wav", teacher, SAMPLE_RATE, subtype="PCM_16")
    sf.write(out / "student.wav", student, SAMPLE_RATE, subtype="PCM_16")
