"""Polyphone accuracy on the CPP dev split (``../shared/data/cpp-dev``, g2pM's open benchmark).

Each CPP sentence marks one polyphonic character with U+2581 on both sides; its label is TONE3
pinyin (``u:`` for ü). Every system reads the plain sentence and gives one reading per character
(None where it reads nothing), so the marked character's index picks its reading directly. Both
sides are written in one notation (``normal``): lower case, ü as ``v`` except after j/q/x/y where
pinyin writes ``u``, a toneless syllable as tone 5. A reading that cannot be aligned (the system
gave a different number of readings than the run has characters) counts as wrong and is counted.

Measuring only: nothing here trains, tunes or writes lexicon entries from these sentences.

CPP is Wikipedia text with about 20 sentences per polyphonic character, mostly with that
character's commonest reading there (its test split: 为 wei2 17 of 20, 得 de2 17, 着 zhe5 20), so
it rewards learning that distribution. ``everyday_polyphones.tsv`` is the counterweight: short everyday sentences in the
same format (▁ marks, TSV with the label), written and labelled by hand, none from CPP.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPP_DIR = ROOT.parent / "shared" / "data" / "cpp-dev"
# Everyday sentences written and labelled for this benchmark: the first set, and a second written
# before the rules of voicefleet/text/senses.py (see each file's header).
EVERYDAY = Path(__file__).resolve().parent / "everyday_polyphones.tsv"
EVERYDAY_B = EVERYDAY.with_name("everyday_polyphones_b.tsv")
MARK = "\u2581"
_HAN = re.compile(r"[\u4e00-\u9fff]+")  # the Han runs our frontend reads (voicefleet.text.mandarin)
Reader = Callable[[str], list]  # sentence -> one reading (or None) per character


def load(directory: Path = CPP_DIR, limit: int | None = None) -> list[tuple[str, int, str]]:
    """(plain sentence, index of the marked character, its label in ``normal`` form)."""
    sents = (directory / "dev.sent").read_text(encoding="utf-8").splitlines()
    labels = (directory / "dev.lb").read_text(encoding="utf-8").splitlines()
    if len(sents) != len(labels):
        raise ValueError(f"{directory}: {len(sents)} sentences but {len(labels)} labels")
    return [_marked(sent, label, directory) for sent, label in list(zip(sents, labels, strict=True))[:limit]]


def load_everyday(path: Path = EVERYDAY) -> list[tuple[str, int, str]]:
    """``load``'s items from a TSV of marked sentences and labels (``everyday_polyphones.tsv``)."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    return [_marked(sent, label, path) for sent, label in rows]


def _marked(sent: str, label: str, where: Path) -> tuple[str, int, str]:
    index = sent.index(MARK)
    if sent[index + 2] != MARK:
        raise ValueError(f"{where}: not one marked character in {sent!r}")
    return sent.replace(MARK, ""), index, normal(label)


def normal(syllable: str | None) -> str | None:
    """One notation for every side: ``nu:e4`` → ``nve4``, ``ju:4`` → ``ju4``, ``ma`` → ``ma5``."""
    if not syllable:
        return None
    s = syllable.strip().lower().replace("u:", "v").replace("ü", "v")
    if s[-1] not in "12345":
        s += "5"
    return re.sub(r"^([jqxy])v", r"\1u", s)


def _by_han_runs(sentence: str, read_run: Callable[[str], list[str]]) -> list[str | None]:
    """Readings per character from a reader of Han runs; None outside runs and for a run whose
    reader did not give one reading per character (so it cannot be aligned)."""
    out: list[str | None] = [None] * len(sentence)
    for run in _HAN.finditer(sentence):
        syllables = read_run(run.group())
        if len(syllables) == len(run.group()):
            out[run.start():run.end()] = syllables
    return out


def ours() -> Reader:
    """Our frontend: ``pinyin_of`` on each Han run, the way ``phrases`` reads a clause."""
    from voicefleet.text.mandarin import pinyin_of

    return lambda sentence: _by_han_runs(sentence, pinyin_of)


def pypinyin_plain() -> Reader:
    """Plain pypinyin, TONE3 with the neutral tone as 5 (the options our lexicon asks it for)."""
    from pypinyin import Style, lazy_pinyin

    def read_run(run: str) -> list[str]:
        return lazy_pinyin(run, style=Style.TONE3, neutral_tone_with_five=True)

    return lambda sentence: _by_han_runs(sentence, read_run)


def g2pm() -> Reader:
    """g2pM (PyPI ``g2pM``): one reading per character with ``char_split``; non-Han kept as is."""
    from g2pM import G2pM

    model = G2pM()
    return lambda sentence: model(sentence, char_split=True, tone=True)


SYSTEMS: dict[str, Callable[[], Reader]] = {"ours": ours, "pypinyin": pypinyin_plain, "g2pM": g2pm}


def score(reader: Reader, items: list[tuple[str, int, str]]) -> dict:
    """Accuracy on the marked characters and characters/s of ``reader`` (this thread only)."""
    start = time.perf_counter()
    outputs = [reader(sentence) for sentence, _, _ in items]
    elapsed = time.perf_counter() - start
    right, unaligned, missed = 0, 0, Counter()
    for (sentence, index, label), out in zip(items, outputs, strict=True):
        if len(out) != len(sentence) or out[index] is None:
            unaligned += 1
            got = None
        else:
            got = normal(out[index])
        right += got == label
        if got != label:
            missed[sentence[index]] += 1
    chars = sum(len(sentence) for sentence, _, _ in items)
    return {"accuracy": round(right / len(items), 4), "right": right, "sentences": len(items),
            "unaligned": unaligned, "chars_per_s": round(chars / elapsed),
            "most_missed": [f"{char} {n}" for char, n in missed.most_common(8)]}


def evaluate(items: list[tuple[str, int, str]], systems: list[str] | None = None) -> dict:
    """Every system on the same items, one after another in this process and thread."""
    report = {}
    for name in systems or list(SYSTEMS):
        start = time.perf_counter()
        reader = SYSTEMS[name]()
        reader(items[0][0])  # warm-up: the lexicon cache, first-call costs, timed with loading
        load_s = time.perf_counter() - start
        report[name] = {**score(reader, items), "load_s": round(load_s, 3)}
    return report
