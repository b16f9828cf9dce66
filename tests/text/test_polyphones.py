"""Polyphones read in context: the real g2pM weights through our inference, pypinyin's phrases and
our lexicon on top (tests/data/golden_polyphones.tsv), and plain pypinyin when g2pM is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voicefleet.text import polyphones
from voicefleet.text.lexicon import lexicon
from voicefleet.text.mandarin import pinyin_of, readings, split_syllable

pytest.importorskip("g2pM")
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_polyphones.tsv"
# Where the model, not pypinyin, gives the right reading (pypinyin: hai2, dan4).
MODEL_MATTERS = [("请把书还回去", 3, "huan2"), ("她弹了一首曲子", 1, "tan2")]


def rows() -> list[tuple[str, str]]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("text, expected", rows(), ids=[r[0] for r in rows()])
def test_golden_polyphone(text: str, expected: str):
    assert " ".join(pinyin_of(text)) == expected


@pytest.mark.parametrize("text, index, reading", MODEL_MATTERS)
def test_the_model_reads_what_pypinyin_alone_misreads(text: str, index: int, reading: str):
    assert lexicon().pinyin(text)[index] != reading
    assert polyphones.model().choose(text)[index] == reading
    assert readings(text)[index] == (text[index], reading)


def test_the_issue_readings_reach_what_the_engines_speak():
    assert readings("你得早点")[1] == ("得", "dei3")
    assert readings("这一行")[2] == ("行", "hang2")
    assert readings("还要长得多")[2] == ("长", "chang2") and readings("全长")[1] == ("长", "chang2")
    assert readings("明天我还你钱")[3] == ("还", "huan2")


def test_our_inference_gives_g2pm_s_own_choices():
    from g2pM import G2pM

    reference, model = G2pM(), polyphones.model()
    sentences = ["他的目的地是北京，还要走很长的路。", "银行行长说这一行的利率还会再调。", "我觉得他得了第一名"]
    for sentence in sentences:
        theirs = reference(sentence, char_split=True, tone=True)
        ours = model.choose(sentence)
        assert ours and {i: theirs[i].replace("u:", "v") for i in ours} == ours


def test_the_model_chooses_only_among_a_character_s_readings():
    model = polyphones.model()
    for text in ("长", "一行行的字", "还还还"):
        for index, reading in model.choose(text).items():
            assert reading in model.names[text[index]]
    assert model.choose("你我他") == {}  # no polyphone: nothing to choose, the model does not run


def test_every_reading_the_model_can_choose_is_a_syllable_the_engines_speak():
    model = polyphones.model()
    for char, names in model.names.items():
        assert len(names) > 1, char
        for name in names:
            split_syllable(name)  # FrontendError for a reading no engine can speak
    assert "r5" not in model.names["儿"]  # erhua is the tones pass's decision, from er2


def test_without_g2pm_the_readings_are_pypinyin_s(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "g2pM", None)  # how Python marks a package as not importable
    polyphones.model.cache_clear()
    try:
        assert polyphones.model() is None
        assert "g2pM is not installed" in caplog.text
        assert polyphones.readings("请把书还回去")[0] == lexicon().pinyin("请把书还回去")
    finally:
        monkeypatch.undo()
        polyphones.model.cache_clear()
    assert polyphones.model() is not None


def test_a_g2pm_without_its_model_files_leaves_pypinyin_reading(tmp_path, monkeypatch, caplog):
    (tmp_path / "g2pM").mkdir()
    (tmp_path / "g2pM" / "__init__.py").write_text("")  # a package that lacks np_ckpt.pkl and the rest
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "g2pM", raising=False)
    polyphones.model.cache_clear()
    try:
        assert polyphones.model() is None
        assert "cannot be read" in caplog.text and "np_ckpt.pkl" in caplog.text
        assert polyphones.readings("他转过身去")[0] == lexicon().pinyin("他转过身去")  # the model reads 过 guo5
    finally:
        monkeypatch.undo()
        polyphones.model.cache_clear()
    assert polyphones.model() is not None
