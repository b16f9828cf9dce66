"""pypinyin's readings in a compact, cached form: the same pinyin for 55 MB less resident memory.

Importing pypinyin holds its 42k-character and 47k-phrase dictionaries as nested Python lists,
about 55 MB — a third of an edge agent's memory. This module asks pypinyin once, in a child
process, for the TONE3 reading (neutral tone as 5) of every phrase and character, writes them
to a cache file (``~/.cache/voicefleet`` or ``VOICEFLEET_CACHE_DIR``, keyed by pypinyin's
version), and from then on reads that file into flat ``str → str`` dicts.

Segmentation is pypinyin's own (``pypinyin.seg.mmseg``, strict mode, see ``segments``); a
piece that is not a phrase is read character by character. A test holds the result equal to
``pypinyin.lazy_pinyin`` on thousands of runs built to stress the segmentation.
"""

from __future__ import annotations

import subprocess
import sys
from bisect import bisect_left
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from voicefleet.files import write_atomic


class LexiconSettings(BaseSettings):
    """Where the cache file goes (``VOICEFLEET_CACHE_DIR``); read once, by ``lexicon()``."""

    model_config = SettingsConfigDict(env_prefix="VOICEFLEET_", extra="ignore")

    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "voicefleet")


def cache_path(cache_dir: Path) -> Path:
    from importlib.metadata import version

    return cache_dir / f"pinyin-lexicon-{version('pypinyin')}.tsv"


def build(path: Path) -> None:
    """Write the lexicon (run in a child process: this imports pypinyin)."""
    from pypinyin import Style, lazy_pinyin
    from pypinyin.constants import PHRASES_DICT, PINYIN_DICT

    def reading(text: str) -> str:
        return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True))

    lines = [f"C\t{chr(code)}\t{reading(chr(code))}\n" for code in PINYIN_DICT]
    lines += [f"P\t{phrase}\t{reading(phrase)}\n" for phrase in PHRASES_DICT]
    write_atomic(path, "".join(lines))  # several agents may build it at once: each renames a whole file


class Lexicon:
    """Held for as long as a process speaks Mandarin, so held small: a character's reading is one of
    about 1,500 syllables, interned, and whether a run begins some phrase is a binary search in the
    phrases' sorted keys rather than a set of every prefix (7 MB less between them)."""

    def __init__(self, path: Path):
        self.chars: dict[str, str] = {}
        self.phrases: dict[str, str] = {}
        self.starts: set[str] = set()  # first characters of phrases: most runs are settled here
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                kind, key, value = line.rstrip("\n").split("\t")
                if kind == "C":
                    self.chars[key] = sys.intern(value)
                elif kind == "P":
                    self.phrases[key] = value
                    self.starts.add(key[0])
                # caches written by earlier versions also hold prefixes ("X"): no longer needed
        self._sorted = sorted(self.phrases)

    def _is_prefix(self, text: str) -> bool:
        """Does some phrase begin with ``text`` (or is it one)?"""
        if len(text) == 1:
            return text in self.starts
        if text in self.phrases:
            return True
        i = bisect_left(self._sorted, text)
        return i < len(self._sorted) and self._sorted[i].startswith(text)

    def segments(self, text: str):
        """pypinyin's strict forward maximum matching (``mmseg.seg``), step for step.

        From each position, grow the match while it is a prefix of some phrase and remember the
        longest match that is a phrase; cut there, or after one character if none was. If the
        prefix chain runs to the end of the text without a phrase, the rest goes char by char.
        """
        while text:
            best, end = 0, 1
            while end <= len(text) and self._is_prefix(text[:end]):
                if end > 1 and text[:end] in self.phrases:
                    best = end
                end += 1
            if best:
                yield text[:best]
                text = text[best:]
            elif end > len(text):  # the chain reached the end with no phrase in it
                yield from text
                return
            else:
                yield text[0]
                text = text[1:]

    def pinyin(self, han: str) -> list[str | None]:
        """One reading per character of ``han`` (None where the character has none)."""
        return self.read(han)[0]

    def read(self, han: str) -> tuple[list[str | None], list[bool], list[bool]]:
        """``pinyin(han)``; for each character whether a phrase of two or more characters gave its
        reading (the context model leaves those alone); and whether a word of the segmentation
        starts there (a fix of ours must not begin inside a word: 为人民 is not in 成为人民)."""
        out: list[str | None] = []
        phrased: list[bool] = []
        starts: list[bool] = []
        for piece in self.segments(han):
            phrase = self.phrases.get(piece)
            if phrase is not None and len(phrase.split()) == len(piece):
                out.extend(phrase.split())
                phrased += [len(piece) > 1] * len(piece)
            else:
                out.extend(self.chars.get(ch) for ch in piece)
                phrased += [False] * len(piece)
            starts += [True] + [False] * (len(piece) - 1)
        return out, phrased, starts


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    path = cache_path(LexiconSettings().cache_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "voicefleet.text.lexicon", str(path)], check=True)
    return Lexicon(path)


if __name__ == "__main__":
    build(Path(sys.argv[1]))
