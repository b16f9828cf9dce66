"""The held-out Mandarin that intelligibility is measured on (``heldout_zh.txt``, written for the
project: smart home, reminders, news, customer service; numbers, dates, money and polyphones).
None is in the distillation's corpus or the CPP polyphone set, so no voice was trained on them."""

from __future__ import annotations

from pathlib import Path

HELDOUT_ZH = Path(__file__).with_name("heldout_zh.txt")
GATE_EVERY = 5  # the build-time gate speaks every 5th sentence: all topics, a fifth of the cost


def heldout_sentences() -> list[str]:
    lines = HELDOUT_ZH.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def gate_sentences() -> list[str]:
    """The subset a build checks (``voicefleet distill``): every ``GATE_EVERY``-th held-out sentence."""
    return heldout_sentences()[::GATE_EVERY]
