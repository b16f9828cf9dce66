"""The golden table: normalisation + Mandarin G2P give the right reading in context."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicefleet.text.mandarin import phrases
from voicefleet.text.normalize import normalize, zh_grammar

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_zh.tsv"


def rows() -> list[tuple[str, str]]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line.strip() and not line.startswith("#")]


def test_the_table_is_large_enough():
    assert len(rows()) >= 60


@pytest.mark.parametrize("text, expected", rows(), ids=[r[0] for r in rows()])
def test_golden_reading(text: str, expected: str):
    if zh_grammar() is None and any(ch.isdigit() for ch in text):
        pytest.skip("wetext is not installed: numbers are read by the simpler fallback")
    syllables = [s for phrase in phrases(normalize(text, "zh")) for s in phrase.syllables]
    assert " ".join(syllables) == expected
