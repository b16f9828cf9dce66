"""CosyVoice3 inline markup: exact round trips, precise errors, lexicon rewriting, Mandarin G2P."""

from __future__ import annotations

import re

import pytest

from voicefleet.text import annotations as a
from voicefleet.text.mandarin import phrases
from voicefleet.text.pronunciation import DEFAULT, Lexicon

VALID = [
    "", "纯文本，没有标注。", "她[h][ào]干净", "高管也通过电话对报道[j][ǐ]予好评。", "[ài]国", "[ēr]子", "[d][e]",
    "[n][ǚ]人", "[l][vè]", "[l][üè]", "[y][ǒu]", "[w][èi]", "[zh][ōng]国", "[x][ióng]", "[g][uì]",
    "[M][AY0][N][UW1][T] later", "a [HH][AH0][L][OW1] b", "[breath]因为他们[breath]", "他突然[laughter]停下来",
    "<strong>勇气</strong>与<strong>智慧</strong>", "<laughter>哈哈</laughter>", "<strong>[h][ǎo]</strong>",
    "<strong><laughter>嗯</laughter></strong>", "x < 5 > 3", "<|endofprompt|>你好",
    *(f"[{tag}]" for tag in sorted(a.SOUND_TAGS)),
]


@pytest.mark.parametrize("text", VALID)
def test_round_trip(text: str):
    assert a.render(a.parse(text)) == text


def test_segments():
    assert a.parse("她[h][ào]干净[breath]<strong>[M][AY0]</strong>") == [
        a.Text("她"), a.Pinyin("hao4"), a.Text("干净"), a.Tag("breath"), a.Span("strong", "start"),
        a.Arpabet(("M", "AY0")), a.Span("strong", "end")]
    assert a.plain(a.parse("她[h][ào]干净[breath][M][AY0] ok")) == f"她{a.PLACEHOLDER}干净{a.PLACEHOLDER} ok"


@pytest.mark.parametrize("written, tone3", [
    ("[h][ǎo]", "hao3"), ("[ài]", "ai4"), ("[d][e]", "de5"), ("[n][ǚ]", "nv3"), ("[l][vè]", "lve4"),
    ("[y][ǔ]", "yu3"), ("[j][ú]", "ju2"), ("[ér]", "er2"), ("[x][ué]", "xue2"), ("[zh][ī]", "zhi1"),
])
def test_tone_marks_to_tone3_and_back(written: str, tone3: str):
    assert a.parse(written) == [a.Pinyin(tone3)]
    assert a.to_annotation(tone3).replace("ü", "v") == written.replace("ü", "v") or written == "[n][ǚ]"


@pytest.mark.parametrize("text, position, says", [
    ("她[x][ao]干净", 1, "is not pinyin"),
    ("ab[hao3]", 2, "tone mark missing"),
    ("[h]好", 0, "needs its tone-marked final"),
    ("[h][aǒ]", 0, "tone mark goes on another vowel"),
    ("[h][ǎǒ]", 0, "two tone marks"),
    ("x[ǐ]", 1, "not a syllable without an initial"),
    ("hi [M][AX][N]", 6, "not a CMU ARPAbet phone"),
    ("[AY3]", 0, "not a CMU ARPAbet phone"),
    ("你好[giggle]", 2, "is not an annotation"),
    ("引用[1]", 2, "is not an annotation"),
    ("说<strong>勇气", 1, "never closed"),
    ("勇气</strong>", 2, "closes nothing"),
    ("<strong><laughter>x</strong></laughter>", 19, "closes nothing"),
    ("<strong><strong>x</strong></strong>", 8, "inside <strong>"),
    ("<b>粗</b>", 0, "not markup"),
    ("abc[def", 3, "never closed"),
    ("a]b", 1, "no '['"),
])
def test_errors_point_at_the_problem(text: str, position: int, says: str):
    with pytest.raises(a.AnnotationError, match=rf"^position {position}: .*{re.escape(says)}") as caught:
        a.parse(text)
    assert caught.value.position == position
    assert isinstance(caught.value, ValueError)


def test_syllable_inventory_is_speakable_by_the_student():
    from voicefleet.text.mandarin import split_syllable

    for syllable in a.SYLLABLES:
        split_syllable(syllable + "1")
        assert a.parse(a.to_annotation(syllable + "3")) == [a.Pinyin(syllable + "3")]


# --- pronunciation lexicon -----------------------------------------------------------------------

def test_lexicon_rewrites_longest_match_outside_markup():
    lexicon = Lexicon({"银行": ["yin2", "hang2"], "银行行长": ["yin2", "hang2", "hang2", "zhang3"],
                       "长": ["zhang3"]}, version="7", name="t")
    assert lexicon.apply("银行行长") == "[y][ín][h][áng][h][áng][zh][ǎng]"
    assert lexicon.apply("去银行[breath]<strong>长</strong>") == "去[y][ín][h][áng][breath]<strong>[zh][ǎng]</strong>"
    assert lexicon.apply("[ch][áng]长") == "[ch][áng][zh][ǎng]"  # the existing annotation is kept
    assert lexicon.apply("[bad长") == "[bad[zh][ǎng]"  # odd markup: never raises


def test_lexicon_json_round_trip(tmp_path):
    path = tmp_path / "lex.json"
    DEFAULT.dump(path)
    again = Lexicon.load(path)
    assert (again.entries, again.version, again.name) == (DEFAULT.entries, DEFAULT.version, DEFAULT.name)


@pytest.mark.parametrize("entries", [{"银行": ["yin2"]}, {"ab": ["a1", "b1"]}, {"行": ["hang7"]}, {"行": ["xao2"]}])
def test_lexicon_refuses_bad_entries(entries):
    with pytest.raises(ValueError):
        Lexicon(entries)


def test_applied_lexicon_reads_the_same_as_the_builtin_fixes():
    text = "他的头发很长，银行行长还是觉得不要。"
    assert [p.syllables for p in phrases(DEFAULT.apply(text))] == [p.syllables for p in phrases(text)]


# --- the Mandarin G2P honours annotations --------------------------------------------------------

def test_g2p_takes_the_annotated_reading():
    (plain,) = phrases("她好干净")
    (pinned,) = phrases("她[h][ào]干净")
    assert plain.syllables == ("ta1", "hao3", "gan1", "jing4")
    assert pinned.syllables == ("ta1", "hao4", "gan1", "jing4") and pinned.text == "她[h][ào]干净"


def test_g2p_skips_tags_emphasis_and_english():
    units = phrases("[breath]他<strong>[M][AY0][N][UW1][T]很好</strong>[laughter]，12个。")
    assert [u.syllables for u in units] == [("ta1", "hen2", "hao3"), ("shi2", "er4", "ge4")]  # 很好: 3-3 sandhi
    assert phrases("[M][AY0]好")[0].syllables == ("hao3",)  # ARPAbet digits are not read as numbers


def test_g2p_reads_bad_markup_as_plain_text():
    # not an annotation, and the normaliser leaves bracketed markup alone: the citation mark is skipped
    assert phrases("参考[1]文献")[0].syllables == ("can1", "kao3", "wen2", "xian4")
