"""Text normalisation: wetext's zh grammars (as we load them), the English rules, markup kept."""

from __future__ import annotations

import pytest

from voicefleet.text.normalize import normalize, spell_integer, zh_grammar

# wetext must be in the environment (pyproject's edge extra); without it Chinese falls back to a simpler reader.
needs_wetext = pytest.mark.skipif(zh_grammar() is None, reason="wetext is not installed (pip install wetext)")


@pytest.mark.parametrize("text, spoken", [
    ("今天是2024年3月15日", "今天是二零二四年三月十五日"), ("下午3:30开会", "下午三点三十分开会"),
    ("价格12.5元", "价格十二点五元"), ("¥1,234.56", "一千二百三十四点五六元"), ("增长了50%", "增长了百分之五十"),
    ("电话13800138000", "电话幺三八零零幺三八零零零"), ("138-0013-8000", "幺三八零零幺三八零零零"),
    ("+86 138 0013 8000", "加八六幺三八零零幺三八零零零"), ("体重65kg", "体重六十五千克"),
    ("温度-3.5℃", "温度负三点五摄氏度"), ("30km/h", "每小时三十公里"), ("3000mAh", "三千毫安时"),
    ("1/3的人", "三分之一的人"), ("2000人", "两千人"), ("没有数字。", "没有数字。"),
    ("第1行\n第2行", "第一行\n第二行"), ("  12  ", "  十二  "),
])
@needs_wetext
def test_chinese(text: str, spoken: str):
    assert normalize(text, "zh") == spoken


@needs_wetext
def test_annotations_are_not_normalised():
    text = "她[h][ào]12岁，[M][AY0][N][UW1][T] 5个[breath]<strong>3</strong>"
    assert normalize(text, "zh") == "她[h][ào]十二岁，[M][AY0][N][UW1][T] 五个[breath]<strong>三</strong>"
    assert normalize("[HH][AH0][L][OW1] 42", "en") == "[HH][AH0][L][OW1] forty-two"


@pytest.mark.parametrize("text", ["", " ", "。。。", "\x00\ud800 1", "[[[1]", "<strong>1", "🙂12", "a" * 3 + "1" * 40,
                                  "1e5", "COVID-19", "]]]1[", "\\\"1\""])
@pytest.mark.parametrize("lang", ["zh", "en", "yue", "fr", ""])
def test_odd_input_never_raises(text: str, lang: str):
    assert isinstance(normalize(text, lang), str)


def test_our_wetext_loading_matches_wetext():
    wetext = pytest.importorskip("wetext")
    reference = wetext.Normalizer(lang="zh", operator="tn")
    grammar = zh_grammar()
    assert grammar is not None, "wetext is installed but its zh grammar did not load"
    for text in ["今天是2024年3月15日", "下午3:30开会", "1/3的人", "30km/h", "10:05:30", "温度-3.5℃",
                 "1,000,000元", "第1名", "2024-03-15", "号码是110", "9:00am", "5-10个", "12:30-14:00", "V2.0"]:
        assert grammar(text) == reference.normalize(text), text


def test_fallback_without_wetext(monkeypatch):
    from voicefleet.text import normalize as module

    monkeypatch.setattr(module, "zh_grammar", lambda: None)
    assert normalize("2000人，50%", "zh") == "两千人，百分之五十"


@pytest.mark.parametrize("text, spoken", [
    ("I have 3 apples and $5.50", "I have three apples and five dollars and fifty cents"),
    ("Dr. Smith, born in 1985", "Doctor Smith, born in nineteen eighty-five"),
    ("meet at 3:30 or 4:05 or 5:00", "meet at three thirty or four oh five or five o'clock"),
    ("the 21st and 2nd and 100th", "the twenty-first and second and one hundredth"),
    ("100% of 1,234,567", "one hundred percent of one million two hundred thirty-four thousand five hundred "
                          "sixty-seven"),
    ("-3.5 km", "minus three point five kilometers"), ("No. 7 vs. 2", "number seven versus two"),
    ("£1.01", "one pound and one penny"), ("since 2005", "since two thousand five"), ("code 0123", "code zero one "
                                                                                                  "two three"),
])
def test_english(text: str, spoken: str):
    assert normalize(text, "en") == spoken


def test_spell_integer():
    assert spell_integer(0) == "zero" and spell_integer(115) == "one hundred fifteen"
    assert spell_integer(2_000_000_001) == "two billion one"
