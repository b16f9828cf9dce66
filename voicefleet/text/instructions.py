"""Natural-language speaking instructions ("用四川话开心地说，快一点", "whisper", "slower please") -> fields.

``parse_instruction`` never raises: what it does not understand stays in ``Instruction.raw`` and the
fields stay None. Matching is by keyword rules in Chinese and English; where two rules overlap the
longer match wins ("不开心" is sad, not happy), and where a field is asked for twice the last request
wins and ``notes`` says so.

``Instruction.cosyvoice_prompt()`` renders the request in the form CosyVoice3 was trained on
(FunAudioLLM/CosyVoice ``cosyvoice/utils/common.py`` ``instruct_list`` and ``example.py``):
``"You are a helpful assistant. 请用四川话表达。<|endofprompt|>"``, using upstream's own sentences
where it has one (dialects, fastest/slowest, loudest/softest, very happy/sad/angry, robot, Peppa Pig).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from voicefleet.text.dialects import DIALECT_CATALOG, lookup

SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"

EMOTIONS = ("happy", "sad", "angry", "surprised", "fearful", "disgusted", "calm", "neutral")
STYLES = ("news_anchor", "storytelling", "whisper", "customer_service", "poetry", "robot", "peppa_pig")
FIELDS = ("dialect", "language", "emotion", "speed", "volume", "style")

# Speed and volume are factors on the engine's normal rate and loudness.
FASTER, MUCH_FASTER, SLOWER, MUCH_SLOWER = 1.2, 1.5, 0.8, 0.6
LOUDER, MUCH_LOUDER, SOFTER, MUCH_SOFTER = 1.3, 1.6, 0.7, 0.5
NORMAL = 1.0


def format_cosyvoice_prompt(instruction: str | None = None) -> str:
    """Upstream's prompt around an instruction; with none, its plain zero-shot prefix."""
    text = (instruction or "").strip()
    return f"{SYSTEM_PROMPT} {text}{END_OF_PROMPT}" if text else f"{SYSTEM_PROMPT}{END_OF_PROMPT}"


class Needs(NamedTuple):
    """What a device must offer to honour an instruction (maps onto Capabilities.missing_for)."""

    language: str | None  # a protocol.LANGUAGES code; "zh" whenever a dialect is asked for
    dialect: str | None  # a protocol.DIALECTS code
    instructions: bool  # emotion, style, speed, volume or free text: only an instruction-following engine


@dataclass(frozen=True)
class Instruction:
    raw: str
    dialect: str | None = None  # dialects.codes()
    language: str | None = None  # protocol.LANGUAGES
    emotion: str | None = None  # EMOTIONS
    speed: float | None = None  # factor, 1.2 = a fifth faster
    volume: float | None = None  # factor, 1.3 = louder
    style: str | None = None  # STYLES
    notes: tuple[str, ...] = field(default=())

    @property
    def recognised(self) -> bool:
        return any(getattr(self, name) is not None for name in FIELDS)

    @property
    def free_text(self) -> str:
        """The request with CosyVoice control tokens and upstream's system prompt removed."""
        return _clean(self.raw)

    @property
    def needs(self) -> Needs:
        expressive = any(v is not None for v in (self.emotion, self.style, self.speed, self.volume))
        unparsed = not self.recognised and bool(self.free_text)  # only CosyVoice3 can try free text
        language = self.language or ("zh" if self.dialect else None)
        return Needs(language, self.dialect, expressive or unparsed)

    def cosyvoice_instruction(self, *, include_speed: bool = True) -> str:
        """The instruction sentence(s) for CosyVoice3; the free text when nothing was recognised.

        ``include_speed=False`` leaves speed out for an engine that passes ``speed`` to
        ``inference_instruct2`` itself (applying it twice would compound it).
        """
        if not self.recognised:
            return self.free_text
        parts = [_dialect_sentence(self.dialect), _EMOTION_SENTENCES.get(self.emotion or ""),
                 _STYLE_SENTENCES.get(self.style or ""),
                 _SPEED_LADDER.sentence(self.speed) if include_speed else None, _VOLUME_LADDER.sentence(self.volume)]
        return "".join(p for p in parts if p)

    def cosyvoice_prompt(self, *, include_speed: bool = True) -> str:
        """The full instruct text CosyVoice3 expects: ``You are a helpful assistant. ...<|endofprompt|>``."""
        return format_cosyvoice_prompt(self.cosyvoice_instruction(include_speed=include_speed))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data


# ------------------------------------------------------------------------------ rendering

_EMOTION_SENTENCES: dict[str, str] = {
    "happy": "请非常开心地说一句话。",  # upstream
    "sad": "请非常伤心地说一句话。",  # upstream
    "angry": "请非常生气地说一句话。",  # upstream
    "surprised": "请用惊讶的语气说一句话。",
    "fearful": "请用害怕的语气说一句话。",
    "disgusted": "请用厌恶的语气说一句话。",
    "calm": "请用平静的语气说一句话。",
    "neutral": "请用平淡自然的语气说一句话。",
}
_STYLE_SENTENCES: dict[str, str] = {
    "news_anchor": "请用新闻播音员的风格说一句话。",
    "storytelling": "请用讲故事的语气说一句话。",
    "whisper": "请用耳语的方式说一句话。",
    "customer_service": "请用客服人员亲切礼貌的语气说一句话。",
    "poetry": "请用朗诵诗歌的方式说一句话。",
    "robot": "你可以尝试用机器人的方式解答吗？",  # upstream
    "peppa_pig": "我想体验一下小猪佩奇风格，可以吗？",  # upstream
}


def _dialect_sentence(code: str | None) -> str | None:
    dialect = lookup(code) if code else None
    return dialect.instruction if dialect else None


class _Ladder(NamedTuple):
    """The sentence for a factor on the normal rate or loudness: at or past ``much_more`` (or at or
    below ``much_less``) upstream's extreme sentence, else a little more, a little less, or normal."""

    much_more: float
    much_less: float
    sentences: tuple[str, str, str, str, str]  # much more, much less, more, less, normal

    def sentence(self, factor: float | None) -> str | None:
        if factor is None:
            return None
        much_more, much_less, more, less, normal = self.sentences
        if factor >= self.much_more:
            return much_more
        if factor <= self.much_less:
            return much_less
        return more if factor > NORMAL else less if factor < NORMAL else normal


_SPEED_LADDER = _Ladder(MUCH_FASTER, MUCH_SLOWER, (
    "请用尽可能快地语速说一句话。",  # upstream
    "请用尽可能慢地语速说一句话。",  # upstream
    "请用稍快的语速说一句话。", "请用稍慢的语速说一句话。", "请用正常的语速说一句话。"))
_VOLUME_LADDER = _Ladder(MUCH_LOUDER, MUCH_SOFTER, (
    "Please say a sentence as loudly as possible.",  # upstream
    "Please say a sentence in a very soft voice.",  # upstream
    "Please say a sentence loudly.", "Please say a sentence in a soft voice.",
    "Please say a sentence at a normal volume."))


# ------------------------------------------------------------------------------ rules


class _Rule(NamedTuple):
    field: str
    value: str | float
    pattern: re.Pattern[str]


def _zh(field_name: str, value: str | float, *words: str) -> _Rule:
    """Chinese words (regex fragments) matched anywhere: Chinese has no word boundaries."""
    return _Rule(field_name, value, re.compile("|".join(words)))


def _en(field_name: str, value: str | float, *phrases: str) -> _Rule:
    """English phrases (regex fragments) matched as whole words, any case, any spacing."""
    body = "|".join(p.replace(" ", r"[\s-]+") for p in phrases)
    return _Rule(field_name, value, re.compile(rf"\b(?:{body})\b", re.IGNORECASE))


def _dialect_rules() -> list[_Rule]:
    rules = []
    suffixes = "方言|口音|腔调|腔|土话"
    for d in DIALECT_CATALOG:
        names = (d.name_zh, d.name_en, *d.aliases)
        zh = sorted((n for n in names if not n.isascii()), key=len, reverse=True)
        # "四川口音", "广东腔", "港腔": the place or short name followed by an accent word.
        stems = {n[:-1] for n in zh if n[-1] in "话話语語" and len(n) > 1}
        zh_words = [re.escape(n) for n in zh] + [f"(?:{'|'.join(map(re.escape, sorted(stems)))})(?:{suffixes})"]
        rules.append(_zh("dialect", d.code, *zh_words))
        # Short ASCII names (wu, yue, nan) are codes or too ambiguous in running English.
        en = [re.escape(n) for n in names if n.isascii() and len(n) >= 4 and "(" not in n]
        rules.append(_en("dialect", d.code, *en))
    return rules


_LANGUAGE_RULES = [
    _zh("language", "zh", "普通话", "普通話", "国语", "國語", "中文", "汉语", "漢語", "华语", "華語"),
    _en("language", "zh", "mandarin", "chinese"),
    _zh("language", "en", "英语", "英語", "英文"), _en("language", "en", "english"),
    _zh("language", "ja", "日语", "日語", "日文", "日本语", "日本語"), _en("language", "ja", "japanese"),
    _zh("language", "ko", "韩语", "韓語", "韩文", "韩国语", "韓國語", "朝鲜语"), _en("language", "ko", "korean"),
    _zh("language", "de", "德语", "德語", "德文"), _en("language", "de", "german"),
    _zh("language", "es", "西班牙语", "西班牙語", "西班牙文"), _en("language", "es", "spanish"),
    _zh("language", "fr", "法语", "法語", "法文"), _en("language", "fr", "french"),
    _zh("language", "it", "意大利语", "意大利語", "意大利文", "义大利语"), _en("language", "it", "italian"),
    _zh("language", "ru", "俄语", "俄語", "俄文", "俄罗斯语"), _en("language", "ru", "russian"),
]

_INTENSE = "(?:尽可能|尽量|非常|特别|超级|极其|极)"
_SPEED_RULES = [
    _zh("speed", MUCH_FASTER, f"{_INTENSE}快", "越快越好", "快很多", "快得多", "飞快"),
    _zh("speed", FASTER, "快一点", "快一些", "快点", "快些", "稍快", "稍微快", "加快", "更快", "语速快",
        "[说讲读念]得?快(?![乐樂])",
        "快速", "提速", "[别不](?:要)?(?:那么|这么|太)?慢", "太慢了"),
    _zh("speed", MUCH_SLOWER, f"{_INTENSE}慢", "越慢越好", "慢很多", "慢得多"),
    _zh("speed", SLOWER, "慢一点", "慢一些", "慢点", "慢些", "稍慢", "稍微慢", "放慢", "更慢", "语速慢", "慢速", "慢慢",
        "[说讲读念]得?慢", "[别不](?:要)?(?:那么|这么|太)?快", "太快了"),
    _zh("speed", NORMAL, "正常语速", "语速正常", "正常的语速", "正常速度", "语速适中", "中等语速"),
    _en("speed", MUCH_FASTER, "as fast as (?:you can|possible)", "as quickly as (?:you can|possible)",
        "(?:much|a lot|way) faster", "(?:very|really|super) (?:fast|quickly)"),
    _en("speed", FASTER, "faster", "speed up", "quicker", "more quickly", "quickly", "fast", "hurry(?: up)?",
        "pick up the pace", "too slow(?:ly)?"),
    _en("speed", MUCH_SLOWER, "as slow(?:ly)? as (?:you can|possible)", "(?:much|a lot|way) slower",
        "(?:very|really|super) slow(?:ly)?"),
    _en("speed", SLOWER, "slower", "slow down", "more slowly", "slowly", "slow", "too fast", "not so fast",
        "less fast"),
    _en("speed", NORMAL, "normal (?:speed|pace|rate)", "regular (?:speed|pace)"),
]

_VOLUME_RULES = [
    _zh("volume", MUCH_LOUDER, f"{_INTENSE}大声", "大喊", "喊出来", "喊着", "呐喊", "吼着", "吼出来"),
    _zh("volume", LOUDER, "大声", "大点声", "大一点声", "声音大", "响亮", "洪亮", "高声", "音量大", "提高音量",
        "放大音量"),
    _zh("volume", MUCH_SOFTER, f"{_INTENSE}小声", f"{_INTENSE}轻声"),
    _zh("volume", SOFTER, "小声", "小点声", "小一点声", "声音小", "轻声", "低声", "音量小", "降低音量",
        "[别不](?:要)?(?:那么|这么|太)?大声", "太吵"),
    _zh("volume", NORMAL, "正常音量", "音量正常"),
    _en("volume", MUCH_LOUDER, "as loud(?:ly)? as (?:you can|possible)", "(?:very|really|super) loud(?:ly)?",
        "shout(?:ing)?", "yell(?:ing)?", "scream(?:ing)?"),
    _en("volume", LOUDER, "louder", "loud", "loudly", "speak up", "more volume", "volume up", "turn it up"),
    _en("volume", MUCH_SOFTER, "(?:very|really|super) (?:soft(?:ly)?|quiet(?:ly)?)",
        "as (?:soft(?:ly)?|quiet(?:ly)?) as (?:you can|possible)", "in a very soft voice"),
    _en("volume", SOFTER, "softer", "soft", "softly", "quieter", "quiet", "quietly", "lower your voice",
        "volume down", "not so loud", "less loud", "too loud", "in a soft voice"),
    _en("volume", NORMAL, "normal volume"),
]

_EMOTION_RULES = [
    _zh("emotion", "happy", "开心", "開心", "高兴", "高興", "快乐", "快樂", "愉快", "欢快", "歡快", "兴奋", "興奮",
        "喜悦", "欢乐", "开朗", "欢喜", "乐呵呵", "笑着"),
    _zh("emotion", "sad", "悲伤", "悲傷", "伤心", "傷心", "难过", "難過", "悲痛", "忧伤", "哀伤", "沮丧", "哭腔",
        "哭着", "悲哀", "失落", "低落", "不开心", "不高兴", "不快乐"),
    _zh("emotion", "angry", "生气", "生氣", "愤怒", "憤怒", "恼火", "发火", "气愤", "暴躁", "愤慨", "火大", "怒气冲冲",
        "凶巴巴", "凶一点"),
    _zh("emotion", "surprised", "惊讶", "驚訝", "吃惊", "惊奇", "震惊", "诧异", "惊喜"),
    _zh("emotion", "fearful", "害怕", "恐惧", "恐懼", "惊恐", "惊慌", "胆怯", "恐慌", "畏惧", "紧张"),
    _zh("emotion", "disgusted", "厌恶", "厭惡", "嫌弃", "恶心", "反感", "鄙视", "嫌恶"),
    _zh("emotion", "calm", "平静", "平靜", "冷静", "淡定", "温柔", "溫柔", "温和", "沉稳", "镇定", "舒缓",
        "[别不]要?(?:那么|这么|太)?(?:生气|激动)"),
    _zh("emotion", "neutral", "中性", "平淡", "没有感情", "不带感情", "没有情绪", "不带情绪", "面无表情", "正常语气",
        "平铺直叙"),
    _en("emotion", "happy", "happy", "happily", "cheerful(?:ly)?", "joyful(?:ly)?", "joyous(?:ly)?", "glad(?:ly)?",
        "excited(?:ly)?", "delighted", "upbeat"),
    _en("emotion", "sad", "sad", "sadly", "sorrowful(?:ly)?", "unhappy", "not happy", "upset", "depressed",
        "tearful(?:ly)?", "crying", "melancholy", "gloomy", "heartbroken", "mournful(?:ly)?"),
    _en("emotion", "angry", "angry", "angrily", "furious(?:ly)?", "annoyed", "irritated", "mad", "enraged"),
    _en("emotion", "surprised", "surprised", "surprise", "astonished", "amazed", "shocked"),
    _en("emotion", "fearful", "scared", "afraid", "fearful(?:ly)?", "frightened", "terrified", "nervous(?:ly)?",
        "anxious(?:ly)?"),
    _en("emotion", "disgusted", "disgusted", "disgust", "grossed out", "contemptuous(?:ly)?"),
    _en("emotion", "calm", "calm", "calmly", "soothing(?:ly)?", "relaxed", "gentle", "gently", "peaceful(?:ly)?",
        "serene(?:ly)?", "don'?t be angry", "less angry"),
    _en("emotion", "neutral", "neutral", "neutrally", "emotionless", "no emotion", "without emotion", "monotone",
        "deadpan", "flat(?:ly)?"),
]

_STYLE_RULES = [
    _zh("style", "news_anchor", "新闻主播", "新聞主播", "新闻播报", "新闻联播", "播音员", "播音員", "播音腔", "主播",
        "播报", "播報", "播新闻", "央视"),
    _zh("style", "storytelling", "讲故事", "講故事", "说故事", "講童話", "讲童话", "睡前故事", "故事", "说书"),
    _zh("style", "whisper", "耳语", "耳語", "悄悄话", "悄悄", "低语", "轻声细语", "窃窃私语", "气声"),
    _zh("style", "customer_service", "客服", "客户服务", "坐席"),
    _zh("style", "poetry", "诗朗诵", "朗诵", "朗誦", "诗歌", "詩歌", "念诗", "读诗", "吟诗", "古诗", "诗词"),
    _zh("style", "robot", "机器人", "機器人"),
    _zh("style", "peppa_pig", "小猪佩奇", "小豬佩奇", "佩奇"),
    _en("style", "news_anchor", "news ?anchor", "news ?reader", "newscaster", "anchor(?:man|woman)", "broadcaster",
        "like (?:on )?the news", "news style", "read(?:ing)? the news", "news report"),
    _en("style", "storytelling", "storytell(?:ing|er)", "tell(?:ing)? a story", "bedtime story", "fairy ?tale",
        "story"),
    _en("style", "whisper", "whisper(?:ing|ed|y)?", "under your breath"),
    _en("style", "customer_service", "customer (?:service|support)", "support agent", "call cent(?:er|re)",
        "help ?desk"),
    _en("style", "poetry", "poem", "poetry", "recit(?:e|ing|ation)", "poetic(?:ally)?"),
    _en("style", "robot", "robot(?:ic|ically)?"),
    _en("style", "peppa_pig", "peppa(?: pig)?"),
]

_RULES: list[_Rule] = [*_dialect_rules(), *_LANGUAGE_RULES, *_SPEED_RULES, *_VOLUME_RULES, *_EMOTION_RULES,
                       *_STYLE_RULES]


# ------------------------------------------------------------------------------ parsing


class _Match(NamedTuple):
    start: int
    end: int
    field: str
    value: str | float
    text: str


_CONTROL_TOKEN = re.compile(r"<\|[^|<>]*\|>")
_SYSTEM_PREFIX = re.compile(rf"^\s*{re.escape(SYSTEM_PROMPT)}\s*", re.IGNORECASE)


def _clean(text: str) -> str:
    """Drop CosyVoice control tokens (a user must not end the prompt early) and upstream's own prefix."""
    return _SYSTEM_PREFIX.sub("", _CONTROL_TOKEN.sub("", text)).strip()


def _matches(text: str) -> list[_Match]:
    found = [_Match(m.start(), m.end(), r.field, r.value, m.group())
             for r in _RULES for m in r.pattern.finditer(text) if m.end() > m.start()]
    # Longest first, so "不开心" beats "开心" and "too fast" beats "fast"; then keep the non-overlapping.
    found.sort(key=lambda m: (m.start - m.end, m.start))
    kept: list[_Match] = []
    for m in found:
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    return sorted(kept)


def _last_wins(matches: list[_Match]) -> tuple[dict[str, _Match], list[str]]:
    """The last match of each field, and a note for each field asked for with different values."""
    chosen: dict[str, _Match] = {}
    notes: list[str] = []
    for m in matches:
        earlier = chosen.get(m.field)
        if earlier is not None and earlier.value != m.value:
            notes.append(f"{m.field}: {m.text!r} ({m.value}) overrides earlier {earlier.text!r} ({earlier.value})")
        chosen[m.field] = m
    return chosen, notes


def _reconcile_language(chosen: dict[str, _Match], notes: list[str]) -> None:
    """A dialect is Chinese: with a non-Chinese language also asked for, the later request wins."""
    dialect, language = chosen.get("dialect"), chosen.get("language")
    if dialect is None or language is None or language.value == "zh":
        return
    loser = dialect if dialect.start < language.start else language
    winner = language if loser is dialect else dialect
    notes.append(f"{winner.field}: {winner.text!r} ({winner.value}) overrides earlier {loser.text!r} "
                 f"({loser.value}): a dialect is spoken in Chinese")
    del chosen[loser.field]


def parse_instruction(text: str | None) -> Instruction:
    """Structured fields from a natural-language speaking request, in Chinese or English. Never raises."""
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    chosen, notes = _last_wins(_matches(unicodedata.normalize("NFKC", _clean(raw))))
    _reconcile_language(chosen, notes)
    fields = {name: m.value for name, m in chosen.items()}
    if not fields and _clean(raw):
        notes.append("nothing recognised: the text is passed to CosyVoice3 as it is")
    return Instruction(raw=raw, notes=tuple(notes), **fields)
