"""split_sentences: sentence and clause cuts, length cap, no empty pieces."""

from __future__ import annotations

import re

import pytest

from voicefleet.text.sentences import split_sentences


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_chinese_sentences_keep_their_punctuation() -> None:
    text = "今天下午三点提醒我开会。明天呢？好的！记得带伞；然后出发"
    assert split_sentences(text) == [
        "今天下午三点提醒我开会。",
        "明天呢？",
        "好的！",
        "记得带伞；",
        "然后出发",
    ]


def test_english_sentences_and_numbers() -> None:
    text = "Hello there. It costs 3.50 dollars! Really?! Yes; at 3:30 today"
    assert split_sentences(text) == [
        "Hello there.",
        "It costs 3.50 dollars!",
        "Really?!",
        "Yes;",
        "at 3:30 today",
    ]


def test_mixed_text_and_newlines() -> None:
    text = "提醒我 call Alice。OK? 好的\n\nSecond line\n第三行"
    assert split_sentences(text) == ["提醒我 call Alice。", "OK?", "好的", "Second line", "第三行"]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_sentences("他说：“你好。”然后走了。") == ["他说：“你好。”", "然后走了。"]
    assert split_sentences('She said "yes." Then left.') == ['She said "yes."', "Then left."]


def test_long_sentence_is_cut_at_clauses_within_the_limit() -> None:
    text = "我们今天去公园，然后去超市买东西，再回家做饭，最后一起看电影。"
    pieces = split_sentences(text, max_chars=12)
    assert pieces == ["我们今天去公园，", "然后去超市买东西，", "再回家做饭，", "最后一起看电影。"]
    assert split_sentences(text, max_chars=20) == [
        "我们今天去公园，然后去超市买东西，",
        "再回家做饭，最后一起看电影。",
    ]


def test_english_long_sentence_cut_at_commas_keeps_spacing() -> None:
    text = "We went to the park, then to the shop, and home again, where we cooked dinner."
    pieces = split_sentences(text, max_chars=40)
    assert pieces == ["We went to the park, then to the shop,", "and home again, where we cooked dinner."]


def test_piece_without_punctuation_is_hard_split() -> None:
    text = "一二三四五六七八九十" * 5
    pieces = split_sentences(text, max_chars=12)
    assert all(len(piece) <= 12 for piece in pieces)
    assert "".join(pieces) == text


def test_english_hard_split_does_not_cut_words() -> None:
    text = " ".join(["word"] * 40)
    pieces = split_sentences(text, max_chars=22)
    assert all(len(piece) <= 22 for piece in pieces)
    assert all(set(piece.split()) == {"word"} for piece in pieces)
    assert " ".join(pieces) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "\n\n \n",
        " 。 ",
        "你好。。。……\n\n",
        "……你好",
        "a\n\n\nb",
        "！？!?;；" * 30,
        "，" * 250,
        "x" * 301,
    ],
)
def test_no_empty_pieces_and_nothing_lost(text: str) -> None:
    pieces = split_sentences(text, max_chars=10)
    assert all(piece and piece == piece.strip() and len(piece) <= 10 for piece in pieces)
    assert _squash("".join(pieces)) == _squash(text)


def test_punctuation_only_tail_joins_the_sentence_before() -> None:
    assert split_sentences("你好。\n……") == ["你好。……"]


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("你好", max_chars=0)
