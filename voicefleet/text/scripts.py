"""Writing systems: which one a text is in, and the language it names where only one of ours uses it.

Used to tell the language of a voice clip from its transcript (when the uploader did not say) and,
in CosyVoice3, whether a job speaks another language than its clip (upstream's cross-lingual path).
"""

from __future__ import annotations

from collections import Counter

# The script each language of voicefleet.protocol.LANGUAGES is written in.
SCRIPTS = {"zh": "han", "ja": "kana", "ko": "hangul", "ru": "cyrillic",
           "en": "latin", "de": "latin", "es": "latin", "fr": "latin", "it": "latin"}
# Scripts that only one of our languages uses: a transcript in one of them names its language.
ONE_LANGUAGE = {script: lang for lang, script in SCRIPTS.items()
                if list(SCRIPTS.values()).count(script) == 1}


def script_of(text: str) -> str | None:
    """The writing system most of ``text``'s letters are in (any kana makes it Japanese: kanji come
    with kana), or None for text without letters."""
    counts: Counter[str] = Counter()
    for ch in text:
        code = ord(ch)
        if 0x3040 <= code <= 0x30FF:
            counts["kana"] += 1
        elif 0x3400 <= code <= 0x9FFF:
            counts["han"] += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
            counts["hangul"] += 1
        elif 0x0400 <= code <= 0x04FF:
            counts["cyrillic"] += 1
        elif ch.isalpha() and code <= 0x024F:
            counts["latin"] += 1
    if counts["kana"]:
        return "kana"
    return counts.most_common(1)[0][0] if counts else None


def language_of(text: str) -> str | None:
    """The language ``text`` is in where its script says so alone (Han → zh, Hangul → ko...); None for
    Latin text, which five of our languages share."""
    script = script_of(text)
    return ONE_LANGUAGE.get(script) if script else None
