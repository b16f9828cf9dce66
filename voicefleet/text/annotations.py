"""CosyVoice3's inline markup, parsed into segments and rendered back byte for byte.

The syntax is the one CosyVoice3's tokenizer has special tokens for (FunAudioLLM/CosyVoice,
``cosyvoice/tokenizer/tokenizer.py``, ``CosyVoice3Tokenizer``; the "hotfix" example in its
``example.py`` writes ``对报道[j][ǐ]予好评``):

- Mandarin pinyin REPLACES one character: an initial bracket then a tone-marked final bracket,
  ``她[h][ào]干净`` (= 她好干净 with 好 read hào). The tokenizer's initials include ``y`` and ``w``
  (``[y][ǒu]``, ``[w][èi]``); a syllable with no initial is one bracket, ``[ài]``, ``[ēr]``. A final
  with no tone mark is the neutral tone (its vocabulary has ``[e]``, ``[a]``…), TONE3 digit 5.
  ü is written ``ü`` with its mark (``[n][ǚ]``) and ``v`` before e (``[l][vè]``), as the tokenizer's
  ``[ǚ]``/``[vè]`` tokens do; the other spelling is accepted too and kept as written.
- English: CMU ARPAbet phones, one bracket each, consecutive brackets one word: ``[M][AY0][N][UW1][T]``.
- Sound events: ``[breath]``, ``[laughter]`` and the other tags below (all in that tokenizer).
- Spans: ``<strong>…</strong>`` (emphasis), ``<laughter>…</laughter>`` (speech while laughing).

Every ``[`` starts an annotation and must make one; there is no escape (upstream has none), so
text like ``[1]`` is an error here. Callers that must never fail (normalisation, the Mandarin
G2P) fall back to treating such text as plain.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

SOUND_TAGS = frozenset({"breath", "quick_breath", "noise", "laughter", "cough", "clucking", "accent", "hissing",
                        "sigh", "vocalized-noise", "lipsmack", "mn"})
SPAN_KINDS = ("strong", "laughter")
_CMU_VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
_CMU_CONSONANTS = frozenset("B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split())
CMU_PHONES = frozenset(_CMU_CONSONANTS | _CMU_VOWELS | {v + s for v in _CMU_VOWELS for s in "012"})
INITIALS = ("b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "zh", "ch", "sh", "r", "z", "c",
            "s", "y", "w")
# Every toneless syllable pypinyin gives a character (v = ü), less those without a vowel to carry a tone
# mark (m, n, ng, hm, hng) and two our phone set cannot say (ê, wong). tests/text checks it.
SYLLABLES = frozenset("""
a ai an ang ao ba bai ban bang bao bei ben beng bi bian biang biao bie bin bing bo bong bu ca cai can cang cao ce cei
cen ceng cha chai chan chang chao che chen cheng chi chong chou chu chua chuai chuan chuang chui chun chuo ci cong cou
cu cuan cui cun cuo da dai dan dang dao de dei den deng di dia dian diao die din ding diu dong dou du duan dui dun duo
e ei en eng er fa fan fang fei fen feng fiao fo fou fu ga gai gan gang gao ge gei gen geng gong gou gu gua guai guan
guang gui gun guo ha hai han hang hao he hei hen heng hong hou hu hua huai huan huang hui hun huo ji jia jian jiang
jiao jie jin jing jiong jiu ju juan jue jun ka kai kan kang kao ke kei ken keng kong kou ku kua kuai kuan kuang kui
kun kuo la lai lan lang lao le lei len leng li lia lian liang liao lie lin ling liu long lou lu luan lun luo lv lve
ma mai man mang mao me mei men meng mi mian miao mie min ming miu mo mou mu na nai nan nang nao ne nei nen neng ni nia
nian niang niao nie nin ning niu nong nou nu nuan nun nuo nv nve o ou pa pai pan pang pao pei pen peng pi pian piao
pie pin ping po pou pu qi qia qian qiang qiao qie qin qing qiong qiu qu quan que qun ran rang rao re ren reng ri rong
rou ru rua ruan rui run ruo sa sai san sang sao se sen seng sha shai shan shang shao she shei shen sheng shi shou shu
shua shuai shuan shuang shui shun shuo si song sou su suan sui sun suo ta tai tan tang tao te tei teng ti tian tiao
tie ting tong tou tu tuan tui tun tuo wa wai wan wang wei wen weng wo wu xi xia xian xiang xiao xie xin xing xiong xiu
xu xuan xue xun ya yan yang yao ye yi yin ying yo yong you yu yuan yue yun za zai zan zang zao ze zei zen zeng zha
zhai zhan zhang zhao zhe zhei zhen zheng zhi zhong zhou zhu zhua zhuai zhuan zhuang zhui zhun zhuo zi zong zou zu zuan
zui zun zuo""".split())
_MARKS = {"\u0304": 1, "\u0301": 2, "\u030c": 3, "\u0300": 4}  # combining macron, acute, caron, grave
_TONE_MARK = {tone: mark for mark, tone in _MARKS.items()}
_BRACKET = re.compile(r"\[([^\[\]]*)\]")
_MARKUP = re.compile(r"</?([A-Za-z][\w-]*)>")
_ARPABET_LIKE = re.compile(r"[A-Z]+\d?")
_FINAL_LIKE = re.compile(r"[a-zü\u0300-\u030c]+")
_DIGIT_TONE = re.compile(r"[a-zü]+[1-5]")
# Anything that is (or tries to be) markup; the plain text between is what normalisers may touch.
PROTECTED = re.compile(r"\[[^\[\]]*\]|</?[A-Za-z][\w-]*>")

_ALLOWED = ("allowed: pinyin replacing one character as [initial][tone-marked final] like [h][ǎo] (or one bracket "
            "with no initial like [ài]), ARPAbet phones like [M][AY0][N][UW1][T], sound tags "
            + " ".join(f"[{t}]" for t in sorted(SOUND_TAGS)) + ", <strong>…</strong>, <laughter>…</laughter>")


class AnnotationError(ValueError):
    """Malformed inline markup; ``position`` is the 0-based offset of the offending piece."""

    def __init__(self, position: int, problem: str):
        super().__init__(f"position {position}: {problem}")
        self.position = position


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Pinyin:
    """One character's reading: TONE3 with v for ü and 5 for the neutral tone (``hao4``, ``lv4``, ``de5``)."""

    syllable: str
    written: str = field(default="", compare=False)  # the brackets as given, so render() round-trips exactly

    def render(self) -> str:
        return self.written or to_annotation(self.syllable)


@dataclass(frozen=True)
class Arpabet:
    """One English word as CMU phones (``("M", "AY0", "N", "UW1", "T")``)."""

    phones: tuple[str, ...]


@dataclass(frozen=True)
class Tag:
    name: str


@dataclass(frozen=True)
class Span:
    kind: Literal["strong", "laughter"]
    edge: Literal["start", "end"]


Segment = Text | Pinyin | Arpabet | Tag | Span


# --- pinyin spelling ---------------------------------------------------------------------------

def _mark(final: str, tone: int) -> str:
    """Put the tone mark where pinyin puts it: a or e, else the o of ou, else the last vowel."""
    written = final.replace("v", "ü") if final == "v" else final
    if tone == 5:
        return written
    vowels = [i for i, ch in enumerate(written) if ch in "aeiouü"]
    index = next((written.index(v) for v in "ae" if v in written), None)
    if index is None:
        index = written.index("o") if "ou" in written else vowels[-1]
    return unicodedata.normalize("NFC", written[:index + 1] + _TONE_MARK[tone] + written[index + 1:])


def split_spelling(syllable: str) -> tuple[str, str, int]:
    """``hao4`` → (``h``, ``ao``, 4); ``ai4`` → (``""``, ``ai``, 4). ValueError when not pinyin."""
    base, tone = syllable[:-1].replace("ü", "v"), syllable[-1:]
    if not tone or tone not in "12345" or base not in SYLLABLES:
        raise ValueError(f"{syllable!r} is not a TONE3 pinyin syllable (like hao3, lv4, de5)")
    initial = next((i for i in ("zh", "ch", "sh") if base.startswith(i)), base[0])
    initial = initial if initial in INITIALS and len(base) > len(initial) else ""
    return initial, base[len(initial):], int(tone)


@lru_cache(maxsize=1)
def _finals() -> frozenset[str]:
    return frozenset(split_spelling(syllable + "1")[1] for syllable in SYLLABLES)


def to_annotation(syllable: str) -> str:
    """``hang2`` → ``[h][áng]``; ``ai4`` → ``[ài]``; ``lve4`` → ``[l][vè]``; ``de5`` → ``[d][e]``."""
    initial, final, tone = split_spelling(syllable)
    return (f"[{initial}]" if initial else "") + f"[{_mark(final, tone)}]"


def _read_final(written: str) -> tuple[str, int] | None:
    """A written final → (toneless final with v for ü, tone); None when it has two tone marks."""
    decomposed = unicodedata.normalize("NFD", written)
    tones = [_MARKS[ch] for ch in decomposed if ch in _MARKS]
    if len(tones) > 1:
        return None
    bare = "".join(ch for ch in decomposed if ch not in _MARKS)
    bare = unicodedata.normalize("NFC", bare).replace("ü", "v")
    return bare, (tones[0] if tones else 5)


def _spelling_key(final: str) -> str:
    """Compare finals with ü and v as one letter (the tokenizer writes ǚ but vè)."""
    return unicodedata.normalize("NFD", final).replace("u\u0308", "v")


def _pinyin(initial: str, written_final: str, position: int, written: str) -> Pinyin:
    read = _read_final(written_final)
    if read is None:
        raise AnnotationError(position, f"{written} has two tone marks; a syllable takes one")
    final, tone = read
    syllable = initial + final
    if syllable not in SYLLABLES:
        if not initial and final not in _finals():
            raise AnnotationError(position, f"{written} is not an annotation; {_ALLOWED}")
        if not initial:
            raise AnnotationError(position, f"{written} is not a syllable without an initial; write the initial "
                                            f"first, e.g. [y]{written} or [j]{written} (only a/o/e finals stand alone)")
        raise AnnotationError(position, f"{written} is not pinyin: {initial} does not combine with {final}")
    canonical = _mark(final, tone)
    if _spelling_key(written_final) != _spelling_key(canonical):
        raise AnnotationError(position, f"{written}: the tone mark goes on another vowel, write "
                                        f"{'[' + initial + ']' if initial else ''}[{canonical}]")
    return Pinyin(f"{syllable}{tone}", written)


# --- parsing -------------------------------------------------------------------------------------

def parse(text: str) -> list[Segment]:
    """``text`` as segments; AnnotationError (with the position and what is allowed) on bad markup."""
    segments: list[Segment] = []
    open_spans: list[tuple[str, int]] = []
    plain_start, index = 0, 0
    while index < len(text):
        char = text[index]
        markup = _MARKUP.match(text, index) if char == "<" else None
        if char not in "[]" and markup is None:
            index += 1
            continue
        if index > plain_start:
            segments.append(Text(text[plain_start:index]))
        if markup is not None:
            segments.append(_span(markup, open_spans))
            index = markup.end()
        else:
            segment, index = _bracketed(text, index)
            segments.append(segment)
        plain_start = index
    if plain_start < len(text):
        segments.append(Text(text[plain_start:]))
    if open_spans:
        kind, position = open_spans[-1]
        raise AnnotationError(position, f"<{kind}> is never closed; close it with </{kind}>")
    return segments


def _span(match: re.Match[str], open_spans: list[tuple[str, int]]) -> Span:
    kind, position, closing = match.group(1), match.start(), match.group(0).startswith("</")
    if kind not in SPAN_KINDS:
        raise AnnotationError(position, f"{match.group(0)} is not markup CosyVoice3 knows; {_ALLOWED}")
    if closing:
        if not open_spans or open_spans[-1][0] != kind:
            expected = f"</{open_spans[-1][0]}> first" if open_spans else f"no <{kind}> is open"
            raise AnnotationError(position, f"{match.group(0)} closes nothing: {expected}")
        open_spans.pop()
        return Span(kind, "end")  # type: ignore[arg-type]
    if any(k == kind for k, _ in open_spans):
        raise AnnotationError(position, f"<{kind}> inside <{kind}>: close the first one before opening another")
    open_spans.append((kind, position))
    return Span(kind, "start")  # type: ignore[arg-type]


def _bracket_at(text: str, index: int) -> re.Match[str]:
    match = _BRACKET.match(text, index)
    if match is None:
        if text[index] == "]":
            raise AnnotationError(index, f"']' with no '[' before it; {_ALLOWED}")
        raise AnnotationError(index, f"'[' is never closed with ']'; {_ALLOWED}")
    return match


def _bracketed(text: str, index: int) -> tuple[Segment, int]:
    """The annotation starting at ``text[index]`` (a bracket) and the offset after it."""
    match = _bracket_at(text, index)
    content = match.group(1)
    if content in SOUND_TAGS:
        return Tag(content), match.end()
    if _ARPABET_LIKE.fullmatch(content):
        return _arpabet(text, index)
    if content in INITIALS:
        if match.end() >= len(text) or text[match.end()] != "[":
            raise AnnotationError(index, f"[{content}] is a pinyin initial and needs its tone-marked final right "
                                         f"after it, e.g. [{content}][ǎo]")
        final = _bracket_at(text, match.end())
        if not _FINAL_LIKE.fullmatch(unicodedata.normalize("NFD", final.group(1))):
            raise AnnotationError(index, f"{text[index:final.end()]} is not pinyin: the final "
                                         f"[{final.group(1)}] must be letters with a tone mark, e.g. [ǎo]")
        return _pinyin(content, final.group(1), index, text[index:final.end()]), final.end()
    if _DIGIT_TONE.fullmatch(content):
        raise AnnotationError(index, f"[{content}]: tone mark missing; write pinyin as [initial][final] with the "
                                     "tone marked on the vowel, e.g. [h][ǎo] rather than [hao3]")
    if content and _FINAL_LIKE.fullmatch(unicodedata.normalize("NFD", content)):
        return _pinyin("", content, index, match.group(0)), match.end()
    raise AnnotationError(index, f"{match.group(0)} is not an annotation; {_ALLOWED}")


def _arpabet(text: str, index: int) -> tuple[Arpabet, int]:
    phones = []
    for match in _brackets_from(text, index):
        phone = match.group(1)
        if not _ARPABET_LIKE.fullmatch(phone):
            break
        if phone not in CMU_PHONES:
            raise AnnotationError(match.start(), f"[{phone}] is not a CMU ARPAbet phone; allowed: "
                                                 f"{' '.join(sorted(_CMU_CONSONANTS | _CMU_VOWELS))} "
                                                 "(vowels may carry stress 0, 1 or 2, e.g. AY1)")
        phones.append(phone)
        index = match.end()
    return Arpabet(tuple(phones)), index


def _brackets_from(text: str, index: int) -> Iterator[re.Match[str]]:
    while (match := _BRACKET.match(text, index)) is not None:
        yield match
        index = match.end()


# --- rendering -----------------------------------------------------------------------------------

def render(segments: Sequence[Segment]) -> str:
    """The markup text of ``segments``: ``render(parse(text)) == text`` for every valid ``text``."""
    return "".join(_render_one(segment) for segment in segments)


def _render_one(segment: Segment) -> str:
    if isinstance(segment, Text):
        return segment.text
    if isinstance(segment, Pinyin):
        return segment.render()
    if isinstance(segment, Arpabet):
        return "".join(f"[{phone}]" for phone in segment.phones)
    if isinstance(segment, Tag):
        return f"[{segment.name}]"
    return f"<{'/' if segment.edge == 'end' else ''}{segment.kind}>"


PLACEHOLDER = "\ufffc"  # OBJECT REPLACEMENT CHARACTER: not Han, not a digit, not punctuation


def plain(segments: Sequence[Segment], placeholder: str = PLACEHOLDER) -> str:
    """What is said, as text: each pinyin or ARPAbet word becomes ``placeholder`` (one character, so a
    caller can walk the text and the annotated segments side by side: we do not know the character
    a pinyin annotation replaced); sound tags and span markers are left out."""
    out = []
    for segment in segments:
        if isinstance(segment, Text):
            out.append(segment.text)
        elif isinstance(segment, Pinyin | Arpabet):
            out.append(placeholder)
    return "".join(out)


def map_plain(text: str, rewrite) -> str:
    """``text`` with ``rewrite`` applied to each stretch outside anything that looks like markup
    (valid or not), so annotations pass through untouched. Never raises on odd markup."""
    out, start = [], 0
    for match in PROTECTED.finditer(text):
        out.append(rewrite(text[start:match.start()]) if match.start() > start else "")
        out.append(match.group(0))
        start = match.end()
    out.append(rewrite(text[start:]) if start < len(text) else "")
    return "".join(out)
