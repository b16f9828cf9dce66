"""Text frontend speed: normalisation + Mandarin G2P, single-threaded, in characters per second.

``measure(seconds)`` is called by ``benchmarks/frontend.py``; run alone it prints its dict:
``python benchmarks/frontend_text.py``. Inputs are the golden table's and the distillation's
held-out sentences. Warm-up (loading the lexicon cache and the wetext graphs) is timed apart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_zh.tsv"


def inputs() -> list[str]:
    from models.distill.corpus import heldout_sentences

    golden = [line.split("\t")[0] for line in GOLDEN.read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    return golden + list(heldout_sentences())


def _rate(texts: list[str], work, seconds: float) -> tuple[float, int]:
    """Characters per second of ``work`` over ``texts``, cycled for at least ``seconds``."""
    chars, rounds, start = sum(len(t) for t in texts), 0, time.perf_counter()
    while True:
        for text in texts:
            work(text)
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return rounds * chars / elapsed, rounds


def measure(seconds: float = 3) -> dict:
    from voicefleet.text.mandarin import phrases
    from voicefleet.text.normalize import normalize, zh_grammar

    texts = inputs()
    start = time.perf_counter()
    grammar = zh_grammar()
    for text in texts:  # warm-up: the pinyin lexicon cache, the FSTs, regex caches
        phrases(normalize(text, "zh"))
    warmup_s = time.perf_counter() - start
    share = seconds / 3
    normalize_cps, _ = _rate(texts, lambda t: normalize(t, "zh"), share)
    g2p_cps, _ = _rate(texts, phrases, share)
    both_cps, rounds = _rate(texts, lambda t: phrases(normalize(t, "zh")), share)
    return {"texts": len(texts), "chars": sum(len(t) for t in texts), "wetext": grammar is not None,
            "warmup_s": round(warmup_s, 3), "normalize_chars_per_s": round(normalize_cps),
            "g2p_chars_per_s": round(g2p_cps), "chars_per_s": round(both_cps), "rounds": rounds}


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
