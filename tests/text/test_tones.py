"""Tones as spoken: sandhi of 一, 不 and third tones, neutral tones, reduplication and erhua, end to
end through ``mandarin.readings`` (what every Mandarin engine speaks) on a hand-checked table."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from voicefleet.text.mandarin import phones_of, pinyin_of, readings, split_syllable
from voicefleet.text.normalize import normalize
from voicefleet.text.tones import spoken

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_tones.tsv"
RULES = {"yi", "bu", "third", "neutral", "reduplication", "erhua"}


def rows() -> list[tuple[str, str, str]]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line.strip() and not line.startswith("#")]


def said(text: str) -> str:
    return " ".join(s for _, s in readings(text) if s)


def lexical(text: str) -> str:
    return " ".join(pinyin_of(normalize(text, "zh")))


def test_the_table_covers_every_rule_with_enough_cases():
    counts = Counter(rule for _, _, rule in rows())
    assert len(rows()) >= 60 and set(counts) == RULES
    assert min(counts.values()) >= 8, counts


def test_most_cases_are_spoken_otherwise_than_the_dictionary_reads_them():
    changed = [text for text, expected, _ in rows() if expected != lexical(text)]
    assert len(changed) >= len(rows()) // 2, changed


@pytest.mark.parametrize(("text", "expected", "rule"), rows(), ids=[r[0] for r in rows()])
def test_spoken_reading(text: str, expected: str, rule: str):
    assert said(text) == expected


@pytest.mark.parametrize("text", [r[0] for r in rows()])
def test_only_tones_change_never_the_syllable(text: str):
    assert [s[:-1] for s in said(text).split()] == [s[:-1] for s in lexical(text).split()]


def test_pinyin_of_stays_lexical():
    assert pinyin_of("你好") == ["ni3", "hao3"]
    assert pinyin_of("不动") == ["bu4", "dong4"]


@pytest.mark.parametrize(("han", "given", "expected"), [
    ("一个", ["yi1", "ge4"], ["yi2", "ge4"]),
    ("一个", ["yi2", "ge4"], ["yi2", "ge4"]),  # whatever tone a lexicon wrote, one rule decides
    ("一起", ["yi4", "qi3"], ["yi4", "qi3"]),
    ("第一", ["di4", "yi2"], ["di4", "yi1"]),
    ("不是", ["bu4", "shi4"], ["bu2", "shi4"]),
    ("不是", ["bu2", "shi4"], ["bu2", "shi4"]),
    ("数一数", ["shu3", "yi1", "shu3"], ["shu3", "yi5", "shu3"]),
])
def test_sandhi_of_yi_and_bu_does_not_depend_on_the_lexicon_tone(han: str, given: list, expected: list):
    assert spoken(han, given) == expected


def test_a_character_without_a_reading_stays_without_one_and_breaks_a_third_tone_run():
    assert spoken("好〇好", ["hao3", None, "hao3"]) == ["hao3", None, "hao3"]


def test_spoken_wants_one_reading_per_character_with_a_tone():
    with pytest.raises(ValueError):
        spoken("你好", ["ni3"])
    with pytest.raises(ValueError):
        spoken("你好", ["ni", "hao3"])


def test_erhua_is_spoken_with_the_phones_the_models_know():
    syllables = [s for _, s in readings("玩儿") if s]
    assert syllables == ["wan2", "er5"] and split_syllable("er5") == ("^", "er5")
    assert phones_of(syllables) == ["sil", "^", "uan2", "#0", "^", "er5", "sil"]


def test_any_mix_of_the_characters_the_rules_look_at_gives_speakable_tones_on_the_same_syllables():
    pool = "一不儿了着的们么吧吗呢啊看想走妈姐你我很好小老虎五九点十第月号日星期周次个对起懂见"
    draw = random.Random(15)
    for _ in range(500):
        han = "".join(draw.choice(pool) for _ in range(draw.randint(1, 9)))
        lexical = pinyin_of(han)
        said_ = spoken(han, lexical)
        assert [s[:-1] for s in said_] == [s[:-1] for s in lexical], han
        phones_of(said_)  # FrontendError on a syllable outside the phone set
