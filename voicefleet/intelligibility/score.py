"""Character error rate of a recogniser's transcript against the text that was spoken.

Both sides go through the same ``normalise``: traditional characters become simplified (the
recogniser writes either), numbers are read as Chinese characters by the project's own reader
(``voicefleet.text.normalize``: "3:30" and "三点三十分" are the same words), and punctuation,
symbols and spaces go, so only what can be heard is compared. Light: opencc loads on first use.
"""

from __future__ import annotations

import threading
import unicodedata

from voicefleet.text.normalize import normalize_zh

# Spellings one cannot hear apart: 幺 is how the number reader writes 1 in phone numbers.
_SAME_SOUND = str.maketrans({"幺": "一", "〇": "零"})
_OPENCC_LOCK = threading.Lock()
_converter = None


def _simplify(text: str) -> str:
    global _converter
    with _OPENCC_LOCK:  # one converter per process, built on first use
        if _converter is None:
            import opencc

            _converter = opencc.OpenCC("t2s")
        return _converter.convert(text)


def _heard(ch: str) -> bool:
    """Letters and numbers are spoken; punctuation (P*), symbols (S*), spaces and controls are not."""
    return unicodedata.category(ch)[0] in "LN"


def normalise(text: str) -> str:
    """``text`` as the characters one hears: simplified, numbers read out, no punctuation or spaces."""
    spoken = normalize_zh(_simplify(unicodedata.normalize("NFKC", text)))
    return "".join(ch for ch in spoken.lower() if _heard(ch)).translate(_SAME_SOUND)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]


def char_error_rate(reference: str, hypothesis: str) -> float:
    """Edits turning normalised ``hypothesis`` into normalised ``reference``, over the reference's
    characters. Above 1 when the recogniser says more than was spoken (a loop, say)."""
    ref = normalise(reference)
    if not ref:
        raise ValueError(f"reference {reference!r} has nothing that is spoken: no error rate can be taken")
    return edit_distance(ref, normalise(hypothesis)) / len(ref)


UNINTELLIGIBLE = 0.5  # a sentence with more wrong than right characters was not understood


def summary(cers: list[float]) -> dict[str, float | int]:
    """{sentences, cer: the mean, over_half: the share of sentences above ``UNINTELLIGIBLE``}."""
    if not cers:
        raise ValueError("no sentence was scored")
    return {"sentences": len(cers), "cer": round(sum(cers) / len(cers), 4),
            "over_half": round(sum(c > UNINTELLIGIBLE for c in cers) / len(cers), 4)}
