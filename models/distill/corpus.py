"""Training sentences with broad phonetic coverage, made offline from pypinyin's phrase list.

No corpus can be downloaded here, so sentences are built from the ~47k words and idioms that
pypinyin ships: greedy picks of words that add unseen tonal syllables and syllable-to-syllable
transitions, glued into clauses of 8-30 characters with commas. The text need not make sense:
the student learns to imitate whatever the teacher does with it. Held-out sentences for the
evaluation are natural ones we wrote (``data/heldout.txt``) and never appear in training.
"""

from __future__ import annotations

import random
from pathlib import Path

from voicefleet.text.mandarin import FrontendError, phrases

HELDOUT = Path(__file__).with_name("data") / "heldout.txt"
_CLAUSE_MARKS = "，，，。！？"
# Function words between content words give clauses a more natural rhythm (and neutral tones).
_FUNCTION_WORDS = list("的了是在我你他和也就不很都把被着吗呢")


def heldout_sentences() -> list[str]:
    lines = HELDOUT.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _words(seed: int) -> list[str]:
    from pypinyin.phrases_dict import phrases_dict

    # Two- and three-character words; four-character idioms would make every clause sound classical.
    words = sorted(w for w in phrases_dict if 2 <= len(w) <= 3 and all("\u4e00" <= c <= "\u9fff" for c in w))
    random.Random(seed).shuffle(words)
    return words


def _units(text: str) -> set[str]:
    """Tonal syllables and syllable bigrams of ``text``: what coverage counts."""
    try:
        syllables = [s for p in phrases(text) for s in p.syllables]
    except FrontendError:
        return set()
    return set(syllables) | {a + "+" + b for a, b in zip(syllables, syllables[1:], strict=False)}


def training_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` sentences; the first ones maximise new coverage, the rest are random mixes."""
    rng = random.Random(seed)
    words = _words(seed)
    seen: set[str] = set()
    pool = iter(words)
    sentences = []
    heldout = set(heldout_sentences())
    while len(sentences) < count:
        sentence = _sentence(rng, pool, seen, greedy=len(sentences) < count // 2)
        if sentence and sentence not in heldout:
            sentences.append(sentence)
    return sentences


def _sentence(rng: random.Random, pool, seen: set[str], *, greedy: bool) -> str:
    clauses = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        target = rng.randint(4, 14)
        clause = ""
        while len(clause) < target:
            word = _pick(pool, seen, rng) if greedy else next(pool, "")
            if not word:  # the word list ran out: start over in a new order
                word = rng.choice(_words(rng.randint(0, 10**6)))
            clause += word + (rng.choice(_FUNCTION_WORDS) if rng.random() < 0.35 else "")
            if greedy:
                seen |= _units(word)
        clauses.append(clause + rng.choice(_CLAUSE_MARKS[:3]))
    return ("".join(clauses))[:-1] + rng.choice(_CLAUSE_MARKS[3:])


def _pick(pool, seen: set[str], rng: random.Random, tries: int = 24) -> str:
    """The candidate (of ``tries`` drawn) that adds the most unseen units."""
    best, gain = "", -1
    for _ in range(tries):
        word = next(pool, None)
        if word is None:
            break
        new = len(_units(word) - seen)
        if new > gain:
            best, gain = word, new
    return best or "你好"
