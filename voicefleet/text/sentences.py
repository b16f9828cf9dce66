"""Split text into sentences so engines can speak (and stream) one piece at a time.

Pieces keep their punctuation, are never empty and are at most ``max_chars`` long: a sentence
that is too long is cut at clause punctuation first, then at a space, and only then mid-word.
"""

from __future__ import annotations

import re

DEFAULT_MAX_CHARS = 100

# Closing quotes/brackets that belong to the sentence they end.
_CLOSERS = "”’\"'）)】」』》"
# A sentence ends after 。！？；!?;… (a run of them), after a full stop that is followed by space
# or the end (so "3.5" and "e.g" stay whole), or at a line break.
_SENTENCE_END = re.compile(
    rf"(?:[。！？；!?;…]+|\.+(?=[{_CLOSERS}]*(?:\s|$)))[{_CLOSERS}]*|\n+"
)
# Clause punctuation for over-long sentences; an ASCII comma or colon between digits
# ("1,000", "3:30") is part of a number.
_CLAUSE_END = re.compile(rf"(?:[，、：]|(?<!\d)[,:]|[,:](?!\d))[{_CLOSERS}]*")


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Sentences of ``text`` in order, each stripped, non-empty and at most ``max_chars`` long."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    pieces: list[str] = []
    for sentence in _attach_bare_punctuation(_stripped(_cut_after(text, _SENTENCE_END)), max_chars):
        pieces.extend(_fit(sentence, max_chars))
    return pieces


def _cut_after(text: str, pattern: re.Pattern[str]) -> list[str]:
    """``text`` cut after every match of ``pattern``, unstripped: the pieces join back to ``text``."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        pieces.append(text[start:match.end()])
        start = match.end()
    pieces.append(text[start:])
    return pieces


def _stripped(pieces: list[str]) -> list[str]:
    return [piece.strip() for piece in pieces if piece.strip()]


def _attach_bare_punctuation(pieces: list[str], max_chars: int) -> list[str]:
    """Glue a piece with nothing to say ("……", a stray "。") onto the one before it."""
    out: list[str] = []
    for piece in pieces:
        speakable = any(ch.isalnum() for ch in piece)
        if out and not speakable and len(out[-1]) + len(piece) <= max_chars:
            out[-1] += piece
        else:
            out.append(piece)
    return out


def _fit(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack(_cut_after(sentence, _CLAUSE_END), max_chars):
        pieces.extend(_hard_split(clause, max_chars))
    return pieces


def _pack(clauses: list[str], max_chars: int) -> list[str]:
    """Join neighbouring clauses while they fit, so a long sentence is not cut into shreds."""
    packed: list[str] = []
    for clause in clauses:
        if packed and len((packed[-1] + clause).strip()) <= max_chars:
            packed[-1] += clause
        else:
            packed.append(clause)
    return _stripped(packed)


def _hard_split(text: str, max_chars: int) -> list[str]:
    """Cut at the last space in the window when there is one past its middle, else at the limit."""
    pieces: list[str] = []
    while len(text) > max_chars:
        cut = text.rfind(" ", max_chars // 2, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        head, text = text[:cut].strip(), text[cut:].strip()
        if head:
            pieces.append(head)
    if text:
        pieces.append(text)
    return pieces
