"""The natural-language instruction parser and the CosyVoice3 prompt it renders."""

from __future__ import annotations

import pytest

from voicefleet.text.dialects import DIALECT_CATALOG
from voicefleet.text.instructions import (
    EMOTIONS,
    STYLES,
    Instruction,
    Needs,
    format_cosyvoice_prompt,
    parse_instruction,
)

# (request, expected fields); fields not named must be None.
CASES: list[tuple[str, dict]] = [
    # dialects
    ("用四川话说这句话", {"dialect": "sichuan"}),
    ("请用粤语", {"dialect": "yue"}),
    ("用广东话讲", {"dialect": "yue"}),
    ("带点广东口音", {"dialect": "yue"}),
    ("港腔", {"dialect": "yue"}),
    ("in Cantonese", {"dialect": "yue"}),
    ("say it in Sichuanese", {"dialect": "sichuan"}),
    ("with a Sichuan accent", {"dialect": "sichuan"}),
    ("用闽南语", {"dialect": "nan"}),
    ("in Hokkien please", {"dialect": "nan"}),
    ("用上海话", {"dialect": "wuu"}),
    ("东北话来一段", {"dialect": "dongbei"}),
    ("用陕西话", {"dialect": "shaanxi"}),
    ("用山西话", {"dialect": "shanxi"}),
    ("客家话", {"dialect": "hak"}),
    # languages
    ("用英语说", {"language": "en"}),
    ("in Japanese", {"language": "ja"}),
    ("请用韩语", {"language": "ko"}),
    ("speak French", {"language": "fr"}),
    ("用普通话", {"language": "zh"}),
    # emotions
    ("用悲伤的语气说", {"emotion": "sad"}),
    ("开心一点", {"emotion": "happy"}),
    ("高兴地说", {"emotion": "happy"}),
    ("不开心", {"emotion": "sad"}),
    ("生气地说", {"emotion": "angry"}),
    ("别生气", {"emotion": "calm"}),
    ("惊讶地", {"emotion": "surprised"}),
    ("害怕的语气", {"emotion": "fearful"}),
    ("嫌弃的口吻", {"emotion": "disgusted"}),
    ("平静地", {"emotion": "calm"}),
    ("不带感情地读", {"emotion": "neutral"}),
    ("sad", {"emotion": "sad"}),
    ("angry", {"emotion": "angry"}),
    ("say it happily", {"emotion": "happy"}),
    ("unhappy", {"emotion": "sad"}),
    ("sounding surprised", {"emotion": "surprised"}),
    ("scared", {"emotion": "fearful"}),
    ("in a calm voice", {"emotion": "calm"}),
    ("neutral tone", {"emotion": "neutral"}),
    ("说快乐的事", {"emotion": "happy"}),  # 快乐 is happy, not fast
    # speed
    ("speak faster", {"speed": 1.2}),
    ("slower please", {"speed": 0.8}),
    ("快一点", {"speed": 1.2}),
    ("说慢一点", {"speed": 0.8}),
    ("慢慢地说", {"speed": 0.8}),
    ("尽可能快", {"speed": 1.5}),
    ("越慢越好", {"speed": 0.6}),
    ("别那么快", {"speed": 0.8}),
    ("太慢了", {"speed": 1.2}),
    ("as fast as possible", {"speed": 1.5}),
    ("you're talking too fast", {"speed": 0.8}),
    ("much slower", {"speed": 0.6}),
    ("normal speed", {"speed": 1.0}),
    # volume
    ("大声一点", {"volume": 1.3}),
    ("小声点", {"volume": 0.7}),
    ("非常大声", {"volume": 1.6}),
    ("louder", {"volume": 1.3}),
    ("speak up", {"volume": 1.3}),
    ("quietly", {"volume": 0.7}),
    ("not so loud", {"volume": 0.7}),
    ("shout it", {"volume": 1.6}),
    ("in a very soft voice", {"volume": 0.5}),
    # styles
    ("模仿新闻主播播报", {"style": "news_anchor"}),
    ("像播音员一样", {"style": "news_anchor"}),
    ("like a news anchor", {"style": "news_anchor"}),
    ("像讲故事一样", {"style": "storytelling"}),
    ("tell it like a bedtime story", {"style": "storytelling"}),
    ("whisper", {"style": "whisper"}),
    ("悄悄地说", {"style": "whisper"}),
    ("轻声细语", {"style": "whisper"}),
    ("像客服一样", {"style": "customer_service"}),
    ("customer service tone", {"style": "customer_service"}),
    ("朗诵这首诗歌", {"style": "poetry"}),
    ("recite it like a poem", {"style": "poetry"}),
    ("用机器人的声音", {"style": "robot"}),
    ("小猪佩奇风格", {"style": "peppa_pig"}),
    # combinations
    ("用四川话开心地说，快一点", {"dialect": "sichuan", "emotion": "happy", "speed": 1.2}),
    ("用粤语难过地慢慢讲", {"dialect": "yue", "emotion": "sad", "speed": 0.8}),
    ("in Cantonese, happily and a bit faster", {"dialect": "yue", "emotion": "happy", "speed": 1.2}),
    ("用东北话大声地讲故事", {"dialect": "dongbei", "volume": 1.3, "style": "storytelling"}),
    ("whisper slowly and sadly", {"style": "whisper", "speed": 0.8, "emotion": "sad"}),
    ("像新闻主播一样，平静，正常语速", {"style": "news_anchor", "emotion": "calm", "speed": 1.0}),
    ("ＦＡＳＴＥＲ", {"speed": 1.2}),  # full-width letters
    # upstream's own prompts parse back to what they ask for
    ("You are a helpful assistant. 请用广东话表达。<|endofprompt|>", {"dialect": "yue"}),
    ("You are a helpful assistant. 请用尽可能快地语速说一句话。<|endofprompt|>", {"speed": 1.5}),
    ("You are a helpful assistant. Please say a sentence as loudly as possible.<|endofprompt|>", {"volume": 1.6}),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_parse(text, expected):
    ins = parse_instruction(text)
    got = {name: getattr(ins, name) for name in ("dialect", "language", "emotion", "speed", "volume", "style")}
    assert got == {name: expected.get(name) for name in got}
    assert ins.raw == text
    assert ins.notes == ()
    assert ins.recognised


def test_at_least_forty_phrasings():
    assert len(CASES) >= 40


@pytest.mark.parametrize("text", ["", "   ", "像小熊维尼一样说话", "blah blah", "🙂", "x" * 10_000])
def test_unknown_keeps_raw_and_never_raises(text):
    ins = parse_instruction(text)
    assert ins.raw == text
    assert not ins.recognised
    assert all(getattr(ins, f) is None for f in ("dialect", "language", "emotion", "speed", "volume", "style"))
    assert bool(ins.notes) == bool(text.strip())


@pytest.mark.parametrize("value", [None, 42, b"bytes"])
def test_non_text_never_raises(value):
    assert isinstance(parse_instruction(value), Instruction)


@pytest.mark.parametrize("text, field, value", [
    ("faster, no, slower", "speed", 0.8),
    ("慢一点……不对，快一点", "speed", 1.2),
    ("开心地说，算了，还是悲伤一点", "emotion", "sad"),
    ("大声一点，不，小声点", "volume", 0.7),
    ("用四川话，不对，用粤语", "dialect", "yue"),
    ("whisper, no, like a news anchor", "style", "news_anchor"),
])
def test_contradictions_keep_the_last_and_note_it(text, field, value):
    ins = parse_instruction(text)
    assert getattr(ins, field) == value
    assert len(ins.notes) == 1 and ins.notes[0].startswith(f"{field}:"), ins.notes


def test_same_request_twice_is_no_contradiction():
    assert parse_instruction("模仿新闻主播播报").notes == ()
    assert parse_instruction("faster, faster!").notes == ()


def test_dialect_and_foreign_language_keep_the_later():
    ins = parse_instruction("用粤语说 in English")
    assert (ins.dialect, ins.language) == (None, "en")
    assert ins.notes
    ins = parse_instruction("in English, no, 用粤语")
    assert (ins.dialect, ins.language) == ("yue", None)
    ins = parse_instruction("用普通话，四川口音")  # Chinese is compatible with a dialect
    assert (ins.dialect, ins.language, ins.notes) == ("sichuan", "zh", ())


@pytest.mark.parametrize("text, needs", [
    ("用四川话说这句话", Needs("zh", "sichuan", False)),
    ("in Cantonese", Needs("zh", "yue", False)),
    ("in English", Needs("en", None, False)),
    ("开心一点", Needs(None, None, True)),
    ("用四川话开心地说，快一点", Needs("zh", "sichuan", True)),
    ("speak faster", Needs(None, None, True)),
    ("像小熊维尼一样说话", Needs(None, None, True)),  # free text: only CosyVoice3 can try it
    ("", Needs(None, None, False)),
    ("<|endofprompt|>", Needs(None, None, False)),
])
def test_needs(text, needs):
    assert parse_instruction(text).needs == needs


def test_prompt_format_matches_upstream():
    assert format_cosyvoice_prompt("请用四川话表达。") == "You are a helpful assistant. 请用四川话表达。<|endofprompt|>"
    assert format_cosyvoice_prompt(None) == "You are a helpful assistant.<|endofprompt|>"
    assert format_cosyvoice_prompt("  ") == "You are a helpful assistant.<|endofprompt|>"
    assert parse_instruction("用四川话说这句话").cosyvoice_prompt() == (
        "You are a helpful assistant. 请用四川话表达。<|endofprompt|>")
    assert parse_instruction("请用粤语").cosyvoice_prompt() == (
        "You are a helpful assistant. 请用广东话表达。<|endofprompt|>")
    assert parse_instruction("尽可能快").cosyvoice_prompt() == (
        "You are a helpful assistant. 请用尽可能快地语速说一句话。<|endofprompt|>")
    assert parse_instruction("非常开心").cosyvoice_prompt() == (
        "You are a helpful assistant. 请非常开心地说一句话。<|endofprompt|>")
    assert parse_instruction("in a very soft voice").cosyvoice_prompt() == (
        "You are a helpful assistant. Please say a sentence in a very soft voice.<|endofprompt|>")
    assert parse_instruction("").cosyvoice_prompt() == "You are a helpful assistant.<|endofprompt|>"


def test_combined_prompt():
    ins = parse_instruction("用四川话开心地说，快一点")
    assert ins.cosyvoice_prompt() == ("You are a helpful assistant. 请用四川话表达。请非常开心地说一句话。"
                                      "请用稍快的语速说一句话。<|endofprompt|>")
    assert ins.cosyvoice_prompt(include_speed=False) == (
        "You are a helpful assistant. 请用四川话表达。请非常开心地说一句话。<|endofprompt|>")


def test_free_text_passes_through_without_control_tokens():
    ins = parse_instruction("像小熊维尼一样<|endofprompt|>说话")
    assert ins.cosyvoice_prompt() == "You are a helpful assistant. 像小熊维尼一样说话<|endofprompt|>"
    assert ins.cosyvoice_prompt().count("<|endofprompt|>") == 1


def _round_trip(ins: Instruction) -> Instruction:
    return parse_instruction(ins.cosyvoice_prompt())


@pytest.mark.parametrize("fields", [
    *({"dialect": d.code} for d in DIALECT_CATALOG),
    *({"emotion": e} for e in EMOTIONS),
    *({"style": s} for s in STYLES),
    *({"speed": v} for v in (0.6, 0.8, 1.0, 1.2, 1.5)),
    *({"volume": v} for v in (0.5, 0.7, 1.0, 1.3, 1.6)),
    {"dialect": "yue", "emotion": "sad", "style": "storytelling", "speed": 0.8, "volume": 1.3},
], ids=str)
def test_rendered_prompt_parses_back(fields):
    ins = Instruction(raw="", **fields)
    back = _round_trip(ins)
    assert {k: getattr(back, k) for k in fields} == fields
    assert back.notes == ()


def test_as_dict():
    data = parse_instruction("faster, no, slower").as_dict()
    assert data["speed"] == 0.8 and data["raw"] == "faster, no, slower" and isinstance(data["notes"], list)
