"""The distillation's intelligibility gate: a student whose measured character error rate is over
the bound is not packaged, and the refusal names the figure, the bound and how to override it.
(The real run, recogniser included, is in test_distill_pipeline.py.)"""

from __future__ import annotations

import argparse
import math

import pytest

from models.distill.intelligibility import DEFAULT_MAX_CER, Unintelligible, check, parse_bound


def _evaluation(student: float, teacher: float = 0.11) -> dict:
    return {"cer": student, "intelligibility": {
        "sentences": 25, "student": {"sentences": 25, "cer": student, "over_half": 0.0},
        "teacher": {"sentences": 25, "cer": teacher, "over_half": 0.0}}}


def test_a_student_over_the_bound_is_refused_naming_figure_bound_and_override():
    with pytest.raises(Unintelligible) as refused:
        check(_evaluation(0.413), DEFAULT_MAX_CER)
    assert refused.value.code == "unintelligible"
    for said in ("41.3%", "11.0%", "30.0%", "25 sentences", "--max-cer 0.42", "--max-cer off"):
        assert said in refused.value.text, said


def test_a_student_within_the_bound_passes_and_off_passes_anything():
    check(_evaluation(0.13), DEFAULT_MAX_CER)
    check(_evaluation(0.30), 0.30)  # the bound itself is allowed
    check(_evaluation(3.5), parse_bound("off"))


def test_an_unmeasured_student_is_refused_unless_the_gate_is_off():
    unmeasured = {"intelligibility": {"unmeasured": "the speech recogniser needs faster_whisper: pip install …"}}
    with pytest.raises(Unintelligible, match="not measured.*faster_whisper.*--max-cer off"):
        check(unmeasured, 0.3)
    with pytest.raises(Unintelligible, match="not measured"):
        check({}, 0.3)  # a work dir evaluated before the gate existed
    check(unmeasured, math.inf)


@pytest.mark.parametrize("bad", ["0", "-0.1", "nan", "thirty"])
def test_the_bound_is_a_positive_fraction_or_off(bad: str):
    assert parse_bound("0.25") == 0.25 and parse_bound("OFF") == math.inf
    with pytest.raises(argparse.ArgumentTypeError, match="or off"):
        parse_bound(bad)


def test_quick_runs_are_not_gated_unless_asked(tmp_path):
    from models.distill.pipeline import parse_args

    out = ["--out", str(tmp_path / "b")]
    assert parse_args(out).max_cer == DEFAULT_MAX_CER
    assert parse_args([*out, "--quick"]).max_cer == math.inf  # twenty steps make no voice
    assert parse_args([*out, "--quick", "--max-cer", "0.3"]).max_cer == 0.3
