"""Training sentences with broad phonetic coverage, made offline from pypinyin's phrase list.

No corpus can be downloaded here, so sentences are built from the ~47k words and idioms that
pypinyin ships: greedy picks of words that add unseen tonal syllables and syllable-to-syllable
transitions, glued into clauses of 8-30 characters with commas. The text need not make sense:
the student learns to imitate whatever the teacher does with it. Held-out sentences for the
evaluation are natural ones we wrote (``data/heldout.txt``) and never appear in training.

Random word strings rarely hold a number or end on a particle, so a share of the sentences come
from our own templates (``templated_sentence``): digits, dates, weekdays, prices, percentages and
times, written as digits so our normaliser reads them (二 and 两 where a reader says them), and
clauses ending on 了 吧 呢 吗 啊 的, which a student trained on the word strings alone swallowed.
"""

from __future__ import annotations

import random
from pathlib import Path

from voicefleet.text.mandarin import FrontendError, phrases

HELDOUT = Path(__file__).with_name("data") / "heldout.txt"
# The intelligibility benchmark's sentences: evaluation text, never training text either.
HELDOUT_ZH = Path(__file__).resolve().parents[2] / "voicefleet" / "intelligibility" / "heldout_zh.txt"
TEMPLATED_SHARE = 0.3  # of the training sentences
_PARTICLES = "了吧呢吗啊的"
_WEEKDAYS = ("周", "星期", "礼拜")
_CLAUSE_MARKS = "，，，。！？"
# Function words between content words give clauses a more natural rhythm (and neutral tones).
_FUNCTION_WORDS = list("的了是在我你他和也就不很都把被着吗呢")


def heldout_sentences() -> list[str]:
    return _lines(HELDOUT)


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
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
    """``count`` distinct sentences: ``TEMPLATED_SHARE`` from the templates (spread through the
    list), of the rest the first half maximise new coverage and the others are random mixes."""
    rng = random.Random(seed)
    words = _words(seed)
    pool = _Pool(words, rng)
    seen: set[str] = set()
    sentences: dict[str, None] = {}  # insertion-ordered and distinct
    heldout = set(heldout_sentences()) | set(_lines(HELDOUT_ZH))
    greedy_plain = (count - round(count * TEMPLATED_SHARE)) // 2
    plain = 0
    while len(sentences) < count:
        i = len(sentences)
        if int((i + 1) * TEMPLATED_SHARE) > int(i * TEMPLATED_SHARE):  # every ~3rd sentence
            sentence = templated_sentence(rng, words)
        else:
            sentence = _sentence(rng, pool, seen, greedy=plain < greedy_plain)
            plain += 1
        if sentence and sentence not in heldout:
            sentences[sentence] = None
    return list(sentences)


class _Pool:
    """The word list in a shuffled order, begun again in a new order when it runs out: a corpus
    larger than one pass (24 candidates a greedy pick) keeps drawing real words."""

    def __init__(self, words: list[str], rng: random.Random):
        self._words, self._rng, self._order = list(words), rng, iter(())

    def __next__(self) -> str:
        word = next(self._order, None)
        if word is None:
            self._rng.shuffle(self._words)
            self._order = iter(self._words)
            word = next(self._order)
        return word


def _number(rng: random.Random, digits: int) -> str:
    """A number of ``digits`` digits in which 2 is frequent (二, 两, 十二, 二十 …)."""
    out = [rng.choice("220123456789") for _ in range(digits)]
    out[0] = out[0] if digits == 1 or out[0] != "0" else "2"
    return "".join(out)


def _quantity(rng: random.Random) -> str:
    """One number as text might write it: dates, weekdays, prices, counts, percentages, times."""
    n = lambda d: _number(rng, d)  # noqa: E731
    forms = (
        lambda: f"{rng.choice(('19', '20'))}{n(2)}年{rng.randint(1, 12)}月{rng.randint(1, 31)}日",
        lambda: f"{rng.randint(1, 12)}月{rng.choice(('2', '12', '20', '22', '25', '28', n(1)))}号",
        lambda: rng.choice(_WEEKDAYS) + rng.choice("一二二三四五六"),
        lambda: f"{n(rng.randint(1, 4))}元",
        lambda: f"¥{n(rng.randint(1, 3))}.{n(2)}",
        lambda: f"{n(1)}.{n(1)}万",
        lambda: f"{n(rng.randint(1, 3))}个",
        lambda: f"{n(2)}%",
        lambda: f"{rng.randint(0, 23)}:{rng.choice(('00', '20', '22', '30', '45'))}",
        lambda: f"第{n(rng.randint(1, 2))}",
        lambda: f"{n(rng.randint(1, 2))}{rng.choice('斤岁点次天人本')}",
        lambda: "两" + rng.choice("个位次天本斤点"),
    )
    return rng.choice(forms)()


def templated_sentence(rng: random.Random, words: list[str]) -> str:
    """One or two clauses of words around a number, each ending on a particle some of the time."""
    clauses = []
    for _ in range(rng.choice((1, 1, 2))):
        parts = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        parts.insert(rng.randint(0, len(parts)), _quantity(rng))
        clause = "".join(parts)
        if rng.random() < 0.7:
            clause += rng.choice(_PARTICLES)
        clauses.append(clause)
    return "，".join(clauses) + rng.choice("。。？！")


def _sentence(rng: random.Random, pool: _Pool, seen: set[str], *, greedy: bool) -> str:
    clauses = []
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        target = rng.randint(4, 14)
        clause = ""
        while len(clause) < target:
            word = _pick(pool, seen) if greedy else next(pool)
            clause += word + (rng.choice(_FUNCTION_WORDS) if rng.random() < 0.35 else "")
            if greedy:
                seen |= _units(word)
        clauses.append(clause + rng.choice(_CLAUSE_MARKS[:3]))
    return ("".join(clauses))[:-1] + rng.choice(_CLAUSE_MARKS[3:])


def _pick(pool: _Pool, seen: set[str], tries: int = 24) -> str:
    """The candidate (of ``tries`` drawn) that adds the most unseen units."""
    candidates = [next(pool) for _ in range(tries)]
    return max(candidates, key=lambda word: len(_units(word) - seen))
