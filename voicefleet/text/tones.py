"""Spoken tones: a Han run's lexical readings as a Mandarin speaker says them.

The lexicon gives each character its dictionary tone (一 yi1, 不 bu4, 你 ni3, 了 le5); speech
changes some of them by context. ``spoken`` applies those changes, in this order, and changes
only tone digits, never a syllable (which syllable a polyphone takes is the lexicon's choice):

1. neutral tones: particles (吧 吗 呢 啊 …), 了/着/的/们/么 in their particle readings,
   reduplicated kinship nouns and verbs (妈妈, 看看);
2. erhua: a 儿 suffix (一点儿, 玩儿, 哪儿) is its own neutral syllable ``er5`` — the phone set
   has no rhotic finals — while 儿 as a word (儿子, 女儿, 婴儿) keeps er2;
3. 一: yi1 in numbers, dates and ordinals and at a word's end; yi5 between a reduplicated verb
   (看一看); otherwise yi2 before a fourth tone and yi4 before the others;
4. 不: bu5 in A-not-A (要不要), V不C (看不懂) and inside a dictionary word (对不起); bu2 before a
   fourth tone;
5. third tones: in a run of third tones every syllable but the last of each foot rises to 2;
   feet follow the lexicon's word boundaries (``lexicon().segments``), with single characters
   paired from the left (a modifier such as 很 or 小 stands alone before two more), and a
   foot's last syllable rises too when the next foot is one syllable that stays 3 (展览馆 zhan2
   lan2 guan3, 小老虎 xiao3 lao2 hu3, 我也想买 wo2 ye3 xiang2 mai3).

The neighbour whose tone 一 and 不 follow is its lexical tone (一个 is yi2 though 个 may be
spoken lightly); third-tone sandhi reads the tones after steps 1-4, since a neutral syllable
ends a run (姐姐 jie3 jie5 stays 3).
"""

from __future__ import annotations

import re

# Particles spoken in the neutral tone when they stand alone after a word (not in 酒吧, 吧台, 吗啡).
_PARTICLES = {"吧": "ba", "吗": "ma", "呢": "ne", "啊": "a", "呀": "ya", "啦": "la", "嘛": "ma",
              "哇": "wa", "呗": "bei", "喽": "lou"}
# Syllables that are always neutral in these characters (the other readings are other syllables:
# 了 liao3, 着 zhao2/zhuo2, 的 di2/di4), so the syllable the lexicon chose says it is the particle.
_ALWAYS_NEUTRAL = {("了", "le"), ("着", "zhe"), ("的", "de"), ("们", "men"), ("么", "me")}
_NEUTRAL_CHARS = set(_PARTICLES) | {char for char, _ in _ALWAYS_NEUTRAL}
# Reduplicated nouns whose second syllable is neutral (妈妈 ma1 ma5, 姐姐 jie3 jie5, 谢谢).
_AA_NOUNS = set("妈爸哥姐弟妹爷奶姥叔伯舅婶姑婆公太宝娃星猩谢")
# One-syllable verbs whose reduplication (看看, 想想 "have a look / think it over") is A + A5.
_AA_VERBS = set("看说想试走听谈聊尝找玩讲写读洗摸猜瞧学练查算歇坐逛转闻")
# Characters before 儿 that make 儿 a word of its own (女儿, 婴儿, 幼儿园, 男儿), not erhua.
_ER_WORDS_AFTER = set("女婴幼孤患健胎男孙宠血生托少侄乞运弃妻育产")
# Characters after 儿 that make 儿 begin a word (儿子, 儿童, 儿女, 儿歌).
_ER_WORDS_BEFORE = set("子童女科歌戏媳孙时")
_DIGITS = set("零〇一二三四五六七八九十")
# After these, 一 is a number or an ordinal read as yi1 (十一, 万一, 二零零一, 第一, 初一).
_YI1_AFTER = _DIGITS | set("两百千万亿第初")
# Words that end in 一 (统一, 唯一, 之一 …): their 一 stays yi1 before whatever follows.
_YI1_WORD_ENDS = set("统唯之专单划归合均逐纯如")
_WEEKDAY = ("星期", "礼拜", "周")
_TIMES = set("次遍回趟")  # 每周一次: counting weeks, not Monday
# One-syllable modifiers that form a foot of their own before two more syllables (小|老虎, 也|很好).
_PROCLITICS = set("很也小挺只好几每")
# Complements that make V不C "cannot V" (看不懂, 听不见, 吃不完); 好, 到, 动 are left out: after a
# noun they are plain negation (身体不好, 时间不到, 他不动).
_COMPLEMENTS = set("懂见完住清透惯")
# Words before 不 that are not the verb of a V不C: pronouns and adverbs (我不懂, 也不懂).
_NOT_VERBS = set("我你他她它们咱这那谁也都就还又再并决绝毫从可却而真很太最更才只")
_THIRD_TONES = re.compile("33+")  # over the tones as digits, 0 where a character has no reading


def spoken(han: str, lexical: list[str | None]) -> list[str | None]:
    """The readings of the Han run ``han`` as spoken: one entry per character, as ``lexical``."""
    if len(han) != len(lexical):
        raise ValueError(f"{len(han)} characters but {len(lexical)} readings")
    if bad := [s for s in lexical if s is not None and (len(s) < 2 or s[-1] not in "12345")]:
        raise ValueError(f"readings {bad} need a tone digit 1-5 at the end (TONE3, e.g. hao3)")
    run = _Run(han, lexical)
    _neutral_particles(run)
    _reduplication(run)
    _erhua(run)
    _yi(run)
    _bu(run)
    _third_tones(run)
    return [None if b is None else f"{b}{t}" for b, t in zip(run.bases, run.tones, strict=True)]


class _Run:
    """One Han run: its characters, syllables without tones, lexical tones, the tones being
    spoken (0 where there is no reading) and where the lexicon's words start."""

    def __init__(self, han: str, lexical: list[str | None]):
        self.han = han
        self.bases = [s[:-1] if s else None for s in lexical]
        self.lexical = [int(s[-1]) if s else 0 for s in lexical]
        self.tones = list(self.lexical)
        self._words: list[tuple[int, int]] | None = None

    @property
    def words(self) -> list[tuple[int, int]]:
        """(start, end) of each word of the lexicon's segmentation, computed once when asked."""
        if self._words is None:
            from voicefleet.text.lexicon import lexicon  # imported when first needed, as in mandarin

            self._words, start = [], 0
            for piece in lexicon().segments(self.han):
                self._words.append((start, start + len(piece)))
                start += len(piece)
        return self._words

    def word_at(self, index: int) -> tuple[int, int]:
        return next(w for w in self.words if w[0] <= index < w[1])

    def char(self, index: int) -> str:
        return self.han[index] if 0 <= index < len(self.han) else ""

    def at(self, char: str, base: str) -> list[int]:
        """Where ``char`` is read as ``base`` (str.find: most runs have none of the few we look for)."""
        out, i = [], self.han.find(char)
        while i >= 0:
            if self.bases[i] == base:
                out.append(i)
            i = self.han.find(char, i + 1)
        return out


def _neutral_particles(run: _Run) -> None:
    """Sentence particles after a word, and the syllables that are only ever particles."""
    for i, char in enumerate(run.han):
        if char not in _NEUTRAL_CHARS or i == 0:
            continue
        if (char, run.bases[i]) in _ALWAYS_NEUTRAL:
            run.tones[i] = 5
        elif _PARTICLES.get(char) == run.bases[i] and run.word_at(i) == (i, i + 1):
            run.tones[i] = 5


def _reduplication(run: _Run) -> None:
    """AA: kinship nouns (妈妈) and verbs (看看) say the second A lightly; a verb's third-tone A
    first rises (想想 xiang2 xiang5), the sandhi of its underlying 3-3. AABB (说说笑笑, 星星点点;
    but 爸爸妈妈 is two nouns) and measure or adverb reduplication (天天, 常常, 慢慢) keep both tones."""
    han = run.han
    for i in range(len(han) - 1):
        if han[i] != han[i + 1] or run.bases[i] != run.bases[i + 1] or run.char(i - 1) == han[i]:
            continue
        if han[i] in _AA_NOUNS and (not _starts_pair(run, i + 2) or run.char(i + 2) in _AA_NOUNS):
            run.tones[i + 1] = 5
        elif han[i] in _AA_VERBS and not _starts_pair(run, i + 2) and not _starts_word(run, i + 1):
            if run.tones[i] == 3:
                run.tones[i] = 2
            run.tones[i + 1] = 5


def _starts_pair(run: _Run, index: int) -> bool:
    return run.char(index) != "" and run.char(index) == run.char(index + 1)


def _starts_word(run: _Run, index: int) -> bool:
    """A word of two or more characters starts at ``index`` (问问题 is 问 + 问题, not 问问)."""
    start, end = run.word_at(index)
    return start == index and end - start > 1


def _erhua(run: _Run) -> None:
    """儿 after a syllable is the rhotic suffix, spoken as a light er5 of its own."""
    for i in run.at("儿", "er"):
        if (i > 0 and run.bases[i - 1] is not None and run.han[i - 1] not in _ER_WORDS_AFTER
                and run.char(i + 1) not in _ER_WORDS_BEFORE):
            run.tones[i] = 5


def _yi(run: _Run) -> None:
    for i in run.at("一", "yi"):
        run.tones[i] = _yi_tone(run, i)


def _yi_tone(run: _Run, i: int) -> int:
    """一 keeps yi1 where it is a number (digits read out, dates, ordinals, weekdays) or ends a
    word; it is light between a reduplicated verb; otherwise it follows the next tone."""
    before, after = run.char(i - 1), run.char(i + 1)
    if not after or run.bases[i + 1] is None or run.lexical[i + 1] == 5:
        return 1  # at the end of a word or before a light syllable: 统一了, 之一的
    if before and before == after and before not in _DIGITS:
        return 5  # 看一看, 数一数
    if before in _YI1_AFTER or before in _YI1_WORD_ENDS or after in _DIGITS:
        return 1  # 十一, 第一次, 统一思想, 一九四九, 一一
    if after in ("比", "点") and run.char(i + 2) in _DIGITS:
        return 1  # 一比一, 一点二
    if after in ("号", "月") or (after == "日" and before == "月"):
        return 1  # 一号, 一月, 十二月一日
    if after == "点" and (before in ("午", "晨") or run.char(i + 2) == "钟"):
        return 1  # 下午一点: one o'clock, not "a little"
    if (before == "点" or _weekday_before(run, i) and after not in _TIMES) and not _starts_word(run, i):
        return 1  # 三点一米, 星期一上午, 周一见 (but 每周一次, 这周一起去, 三点一起走)
    return 2 if run.lexical[i + 1] == 4 else 4


def _weekday_before(run: _Run, i: int) -> bool:
    return any(run.han[max(0, i - len(w)):i] == w for w in _WEEKDAY)


def _bu(run: _Run) -> None:
    for i in run.at("不", "bu"):
        run.tones[i] = _bu_tone(run, i)


def _bu_tone(run: _Run, i: int) -> int:
    """不 is light in A-not-A questions (要不要, 喜不喜欢), between a verb and its complement
    (看不懂) and inside a dictionary word (对不起, 来不及); otherwise bu2 before a fourth tone,
    bu4 elsewhere. 一A不A (一动不动) is a plain negation."""
    before, after = run.char(i - 1), run.char(i + 1)
    if before and before == after:
        return 5 if run.char(i - 2) != "一" else _bu_by_next(run, i)
    if run.word_at(i) == (i - 1, i + 2) and before not in _DIGITS:
        return 5  # 对不起, 来不及, 冷不丁; but 四不像, 三不管 are numbers and plain negation
    if after in _COMPLEMENTS and before and before not in _NOT_VERBS:
        return 5
    return _bu_by_next(run, i)


def _bu_by_next(run: _Run, i: int) -> int:
    """bu2 before a fourth tone (不动, 不是), bu4 before any other and at the end."""
    after = run.char(i + 1)
    if after and run.bases[i + 1] is not None and run.lexical[i + 1] == 4:
        return 2
    return 4


def _third_tones(run: _Run) -> None:
    """Each run of two or more third tones, split into feet, rises before its last syllable."""
    for stretch in _THIRD_TONES.finditer("".join(map(str, run.tones))):
        _sandhi_feet(run.tones, _feet(run, stretch.start(), stretch.end()))


def _feet(run: _Run, start: int, end: int) -> list[range]:
    """Feet of the third-tone stretch [start, end): the part of each longer word inside it is a
    foot (上午|九点; words over three are cut into pairs, 岂有|此理), and one-character words are
    paired from the left (我也|想买); an odd one out is a foot of its own."""
    feet: list[range] = []
    singles: list[int] = []
    for w_start, w_end in run.words:
        lo, hi = max(w_start, start), min(w_end, end)
        if w_end - w_start == 1 and lo < hi:
            singles.append(lo)
        elif lo < hi:
            feet.extend(_pairs(run, singles))
            singles = []
            feet.extend(_cut(lo, hi))
    return feet + _pairs(run, singles)


def _pairs(run: _Run, singles: list[int]) -> list[range]:
    """Consecutive single characters as feet of two, from the left; a modifier before two or
    more of them stands alone (小|老虎)."""
    feet, k = [], 0
    while k < len(singles):
        alone = run.han[singles[k]] in _PROCLITICS and len(singles) - k > 2
        size = 1 if alone or k == len(singles) - 1 else 2
        feet.append(range(singles[k], singles[k] + size))
        k += size
    return feet


def _cut(lo: int, hi: int) -> list[range]:
    if hi - lo <= 3:
        return [range(lo, hi)]
    return [range(lo, lo + 2), *_cut(lo + 2, hi)]


def _sandhi_feet(tones: list[int], feet: list[range]) -> None:
    """Inside each foot all but the last syllable rise; then, from the right, a foot's last
    syllable rises when the next foot still starts with a third tone (a one-syllable foot)."""
    for foot in feet:
        for i in foot[:-1]:
            tones[i] = 2
    for left, right in zip(reversed(feet[:-1]), reversed(feet[1:]), strict=True):
        if tones[left[-1]] == 3 and tones[right[0]] == 3:
            tones[left[-1]] = 2
