"""The one decision "is there anything to speak in this text" (voicefleet/text/speakable.py)."""

from __future__ import annotations

import pytest

from voicefleet.protocol import EMPTY_TEXT, NOTHING_TO_SPEAK, request_fault
from voicefleet.text.speakable import speakable, unspeakable


@pytest.mark.parametrize("text", [
    "你好", "hello", "123", "½", "👍 好的", "Ça va ?", "こんにちは", "안녕", "Привет",
    "她[h][ào]", "[h][ǎo]", "[M][AY0][N][UW1][T]",  # pinyin and ARPAbet stand for words
    "<strong>好</strong>", "[laughter]哈哈", "[1]",  # malformed markup is read as plain text: "1"
])
def test_words_in_any_script_are_speakable(text: str) -> None:
    assert speakable(text) and unspeakable(text) is None


@pytest.mark.parametrize("text", [
    "👍👍👍", "。。！？……", "!?...", "$%&*", "——", "[laughter]", "[breath][cough]", "<strong>！</strong>",
    "\u0301\u0300",  # combining marks alone
])
def test_emoji_punctuation_symbols_and_sound_tags_are_nothing_to_speak(text: str) -> None:
    why = unspeakable(text)
    assert why is not None and why.code == NOTHING_TO_SPEAK and "give words to speak" in why.text
    assert not speakable(text)


@pytest.mark.parametrize("text", ["", " ", " \n\t\u3000"])
def test_blank_text_is_empty(text: str) -> None:
    why = unspeakable(text)
    assert why is not None and why.code == EMPTY_TEXT and "empty" in why.text


def test_both_codes_are_request_faults() -> None:
    assert request_fault(EMPTY_TEXT) and request_fault(NOTHING_TO_SPEAK)
