"""Is there anything to speak in this text? Decided once, here, for every path that takes text: the
control plane's submit (422), every engine (EngineError), the hub's ``/v1/speak`` and Wyoming.

Spoken are letters and digits in any script (Unicode categories L and N: 你好, hello, 123, ½) and
inline pinyin or ARPAbet (voicefleet/text/annotations.py), which stand for words. Emoji, punctuation,
symbols, spaces and sound tags alone (``[laughter]``) are not speech: an engine would give silence
or refuse, each its own way, so every path refuses them the same way instead.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from voicefleet.protocol import EMPTY_TEXT, NOTHING_TO_SPEAK
from voicefleet.text.annotations import AnnotationError, Arpabet, Pinyin, Text, parse


@dataclass(frozen=True)
class Unspeakable:
    """Why a text has nothing to speak: ``code`` (a protocol request fault) and ``text`` saying what to fix."""

    code: str
    text: str


def unspeakable(text: str) -> Unspeakable | None:
    """Why nothing in ``text`` would be spoken, or None when something would."""
    if not text.strip():
        return Unspeakable(EMPTY_TEXT, "the text is empty or only whitespace; give words to speak")
    if _has_speech(text):
        return None
    return Unspeakable(NOTHING_TO_SPEAK, "nothing to speak: the text has no letters or digits (emoji, "
                                         "punctuation, symbols and sound tags alone are not read aloud); "
                                         "give words to speak")


def speakable(text: str) -> bool:
    return unspeakable(text) is None


def _has_speech(text: str) -> bool:
    try:
        segments = parse(text)
    except AnnotationError:  # malformed markup is read as plain text (as the normalisers do)
        return _has_letters(text)
    # Pinyin and ARPAbet are words; sound tags and <strong>/<laughter> edges are not.
    return any(isinstance(s, (Pinyin, Arpabet)) or isinstance(s, Text) and _has_letters(s.text) for s in segments)


def _has_letters(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)
