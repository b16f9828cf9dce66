"""Text normalisation: numbers, dates, times, money, units and phone numbers written out as words.

``normalize(text, lang)`` rewrites only the plain text between inline annotations (see
``annotations``), so ``[AY0]`` or ``[h][ǎo]`` pass through untouched, and never raises.

Chinese uses WeTextProcessing's zh TN grammars as the ``wetext`` wheel ships them (compiled
FSTs run by ``kaldifst``, offline). We load only the zh tagger and verbalizer with kaldifst and
do wetext's token reordering ourselves: ``import wetext`` eagerly loads every language's graphs
(en, ja, ITN: +37 MB resident and 0.7 s), which an edge agent cannot spare; ours costs ~11 MB and
40 ms. A test holds our output equal to ``wetext.Normalizer``'s. The FSTs cost grows faster than
the length of their input, so text goes in clause by clause and only clauses with digits go in.
Without wetext (or if it fails on a piece) the small digit reader ``read_digits_zh`` is the fallback.

English (``lang="en"``) is a small rule set: abbreviations, money, percentages, ordinals, times,
years and plain numbers as words; engines like eSpeak do the rest.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path

from voicefleet.text.annotations import map_plain

log = logging.getLogger(__name__)

_CLAUSE = re.compile(r"[^，。！？；\n]*[，。！？；\n]*")
_DIGIT = re.compile(r"[0-9０-９]")
# wetext's zh TN puts these token fields in this order before verbalising (its TN_ORDERS).
_ORDERS = {"date": ["year", "month", "day"], "fraction": ["denominator", "numerator"],
           "measure": ["denominator", "numerator", "value"], "money": ["value", "currency"],
           "time": ["noon", "hour", "minute", "second"]}
_TOKEN = re.compile(r'(\w+) \{((?: \w+: "(?:[^"\\]|\\.)*")*) \}')
_FIELD = re.compile(r'(\w+): "((?:[^"\\]|\\.)*)"')
_ZH_DIGITS = "零幺二三四五六七八九"  # 1 is yao1 in phone numbers
# Mobile numbers with separators or +86, which the grammars read as quantities (138 0013 8000 →
# 一百三十八 …); run together they are already read digit by digit.
_MOBILE = re.compile(r"(?<![\d.])(?:(\+?86)[-\s]?)?(1[3-9]\d)[-\s](\d{4})[-\s](\d{4})(?!\d)|(?<![\d.])(\+86)[-\s]?"
                     r"(1[3-9]\d{9})(?!\d)")
_GROUPING = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # ¥1,234.56 would be 一元,两百三十四点五六
_UNIT_FIXES = {"mAh": "毫安时", "㎡": "平方米"}  # the grammars misread these (3000mAh → 三千米Ah)
_YUAN_TWICE = re.compile(r"[¥￥]\s?(\d[\d,]*(?:\.\d+)?)\s?元")  # ¥12.50元 would be 一元二点五零元
# Codes are said digit by digit, which the grammars miss for a run with a leading zero (0826 → 零八百
# 二十六, 编号0113 → 零一百一十三) and for one after a code's name (取件码是4826 → 四千八百二十六).
# Zero-padded pairs (08:30, 01月) are the grammars' to read as dates and times.
_CODE = re.compile(r"(?<![\d.:：/-])0\d{2,}(?![\d.:：/-])"
                   r"|(?:(?:验证|取件|密|校验|邀请|动态|提货|取餐)码|(?:编|单|工|学|卡|账|尾)号)"
                   r"(?:是|为|：|:)?\s*\d{3,}(?![\d.])")
_DIGIT_RUN = re.compile(r"\d+")
_PADDED = re.compile(r"(?<!\d)0(\d)(?=[月日号时点])")  # 01月 would be 零一月 (05分 stays 零五分)


# --- Chinese -------------------------------------------------------------------------------------

class _ZhGrammar:
    def __init__(self, root: Path):
        import kaldifst

        self.tagger = kaldifst.TextNormalizer(str(root / "tagger.fst"))
        self.verbalizer = kaldifst.TextNormalizer(str(root / "verbalizer.fst"))

    def __call__(self, text: str) -> str:
        """wetext.Normalizer(lang="zh", operator="tn").normalize(text), step for step."""
        text = text.strip()
        if not _DIGIT.search(text):
            return text
        spoken = self.verbalizer(_reorder(self.tagger(text).strip())).strip()
        return spoken.replace('\\"', '"').replace("\\\\", "\\")  # undo wetext's escaping of " and \


def _reorder(tagged: str) -> str:
    return " ".join(_token(m.group(1), _FIELD.findall(m.group(2))) for m in _TOKEN.finditer(tagged))


def _token(name: str, fields: list[tuple[str, str]]) -> str:
    values = dict(fields)
    order = [key for key, _ in fields]
    if name in _ORDERS and values.get("preserve_order") != "true":
        order = _ORDERS[name] + [key for key in order if key not in _ORDERS[name]]
    # wetext escapes the still-escaped value once more; the verbaliser expects exactly that
    return name + " {" + "".join(f' {key}: "{_escape(values[key])}"' for key in order if key in values) + " }"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@lru_cache(maxsize=1)
def zh_grammar() -> _ZhGrammar | None:
    """The wetext zh TN grammar, or None (logged once) when wetext or kaldifst is missing or broken."""
    spec = importlib.util.find_spec("wetext")  # find, do not import: see the module docstring
    if spec is None or spec.origin is None:
        log.warning("wetext is not installed: Chinese numbers fall back to the simple reader")
        return None
    try:
        return _ZhGrammar(Path(spec.origin).parent / "fsts" / "zh" / "tn")
    except Exception as exc:  # a missing kaldifst or unreadable graph: degrade, do not fail the job
        log.warning("wetext's zh grammar did not load (%s): Chinese numbers fall back to the simple reader", exc)
        return None


def normalize_zh(text: str) -> str:
    grammar = zh_grammar()
    return "".join(_clause_zh(clause, grammar) for clause in _CLAUSE.findall(text) if clause)


def _clause_zh(clause: str, grammar: _ZhGrammar | None) -> str:
    if not _DIGIT.search(clause):
        return clause
    clause = _YUAN_TWICE.sub(r"\1元", _MOBILE.sub(_read_mobile, _GROUPING.sub("", clause)))
    clause = _PADDED.sub(r"\1", _CODE.sub(_read_code, clause))
    for written, spoken in _UNIT_FIXES.items():
        clause = clause.replace(written, spoken)
    core = clause.strip()
    spoken = core
    if grammar is not None:
        try:
            spoken = grammar(core)
        except Exception as exc:  # kaldifst on odd input: the simple reader still gets digits said
            log.debug("wetext failed on %r: %s", core, exc)
    spoken = read_digits_zh(spoken).replace("第两", "第二")  # digits the grammar left; 第2名 is not 第两名
    lead = clause[:len(clause) - len(clause.lstrip())]
    return lead + spoken + clause[len(clause.rstrip()):] if core else clause


# The simple reader: just enough for numbers, for what the grammar leaves and wherever wetext is missing.
_DIGITS = "零一二三四五六七八九"
_NUMBER = re.compile(r"(\d+)(?:\.(\d+))?(%?)(年?)")


def read_digits_zh(text: str) -> str:
    """Digits read aloud: 25 → 二十五, 3.5 → 三点五, 50% → 百分之五十, long runs digit by digit."""
    return _NUMBER.sub(_read_number, text.replace("\u3000", " "))


def _read_number(match: re.Match[str]) -> str:
    whole, frac, percent, year = match.groups()
    if year and len(whole) == 4 and not frac and not percent:  # 2024年 is read digit by digit
        return _digit_string(whole) + year
    as_digits = len(whole) > 9 or (len(whole) > 1 and whole[0] == "0")
    spoken = _digit_string(whole) if as_digits else _integer(int(whole))
    if frac:
        spoken += "点" + _digit_string(frac)
    return ("百分之" + spoken if percent else spoken) + year


def _digit_string(digits: str, names: str = _DIGITS) -> str:
    return "".join(names[int(d)] for d in digits)


def _integer(n: int) -> str:
    if n < 10:
        return _DIGITS[n]
    for unit, name in ((10**8, "亿"), (10**4, "万")):
        if n >= unit:
            high, low = divmod(n, unit)
            return _integer(high) + name + (("零" if low < unit // 10 else "") + _integer(low) if low else "")
    out, started = "", False
    for unit, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit, n = divmod(n, unit)
        if digit:
            spoken = "两" if (digit == 2 and unit >= 1000 and not started) else _DIGITS[digit]
            out += ("" if (unit == 10 and digit == 1 and not started) else spoken) + name
            started = True
        elif started and n:
            out += "零" if not out.endswith("零") else ""
    return out


def _read_code(match: re.Match[str]) -> str:
    return _DIGIT_RUN.sub(lambda run: _digit_string(run.group(), _ZH_DIGITS), match.group())


def _read_mobile(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(5)
    digits = "".join(g for g in (match.group(2, 3, 4) if match.group(2) else (match.group(6),)))
    return ("加八六" if prefix else "") + _digit_string(digits, _ZH_DIGITS)


# --- English -------------------------------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_ABBREVIATIONS = {"Dr.": "Doctor", "Mr.": "Mister", "Mrs.": "Missus", "Ms.": "Miz", "Prof.": "Professor",
                  "Jr.": "Junior", "Sr.": "Senior", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example",
                  "i.e.": "that is", "approx.": "approximately", "Jan.": "January", "Feb.": "February",
                  "Mar.": "March", "Apr.": "April", "Aug.": "August", "Sep.": "September", "Sept.": "September",
                  "Oct.": "October", "Nov.": "November", "Dec.": "December", "Mt.": "Mount", "Ave.": "Avenue"}
_ABBREVIATION = re.compile(r"(?<![\w.])(" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r")(?!\w)")
_UNITS = {"km": "kilometers", "kg": "kilograms", "cm": "centimeters", "mm": "millimeters", "m": "meters",
          "g": "grams", "h": "hours", "min": "minutes", "s": "seconds", "mph": "miles per hour", "GB": "gigabytes",
          "MB": "megabytes", "%": "percent"}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}
_EN_NUMBER = re.compile(
    r"(?P<money>[$£€])(?P<mwhole>\d[\d,]*)(?:\.(?P<mcents>\d{2}))?"
    r"|(?P<time>\b\d{1,2}):(?P<minute>[0-5]\d)\b"
    r"|(?P<ord>\b\d+)(?:st|nd|rd|th)\b"
    r"|(?P<num>-?\d[\d,]*(?:\.\d+)?)(?:\s?(?P<unit>%|(?:km|kg|cm|mm|mph|min|GB|MB|m|g|h|s)\b))?")
_YEAR_CONTEXT = re.compile(r"(?:\b(?:in|since|until|by|from|of|year|to)|[A-Z][a-z]+\.?\s\d{1,2},?)\s*$")


def spell_integer(n: int) -> str:
    """1234 → one thousand two hundred thirty-four (short scale); negatives take minus."""
    if n < 0:
        return "minus " + spell_integer(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return _ONES[n // 100] + " hundred" + (" " + spell_integer(n % 100) if n % 100 else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, low = divmod(n, scale)
            return spell_integer(high) + " " + name + (" " + spell_integer(low) if low else "")
    raise AssertionError(n)


def _ordinal(n: int) -> str:
    words = spell_integer(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    last = words[cut:]
    return words[:cut] + (_ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th"))


def _year(n: int) -> str:
    high, low = divmod(n, 100)
    if low == 0:
        return spell_integer(high) + " hundred" if high % 10 else spell_integer(n)
    if 2000 <= n < 2010:
        return spell_integer(n)
    return spell_integer(high) + " " + ("oh " + _ONES[low] if low < 10 else spell_integer(low))


def _number(text: str, before: str) -> str:
    whole, _, frac = text.partition(".")
    digits = whole.replace(",", "").lstrip("-")
    sign = "minus " if whole.startswith("-") else ""
    if len(digits) > 15 or (len(digits) > 1 and digits[0] == "0"):
        spoken = " ".join(_ONES[int(d)] for d in digits)  # codes and huge numbers: digit by digit
    elif not frac and not sign and "," not in whole and len(digits) == 4 and 1100 <= int(digits) < 2100 \
            and _YEAR_CONTEXT.search(before):
        spoken = _year(int(digits))
    else:
        spoken = spell_integer(int(digits))
    if frac:
        spoken += " point " + " ".join(_ONES[int(d)] for d in frac)
    return sign + spoken


def _money(match: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCY[match.group("money")]
    amount = int(match.group("mwhole").replace(",", ""))
    spoken = f"{spell_integer(amount)} {one if amount == 1 else many}"
    if match.group("mcents") and int(match.group("mcents")):
        sub = int(match.group("mcents"))
        spoken += f" and {spell_integer(sub)} {cent if sub == 1 else cents}"
    return spoken


def _en_match(match: re.Match[str], text: str) -> str:
    if match.group("money"):
        return _money(match)
    if match.group("time"):
        hour, minute = int(match.group("time")), int(match.group("minute"))
        if minute == 0:
            return f"{spell_integer(hour)} o'clock"
        return f"{spell_integer(hour)} {'oh ' + _ONES[minute] if minute < 10 else spell_integer(minute)}"
    if match.group("ord"):
        return _ordinal(int(match.group("ord")))
    spoken = _number(match.group("num"), text[:match.start()])
    unit = match.group("unit")
    return f"{spoken} {_UNITS[unit]}" if unit else spoken


def normalize_en(text: str) -> str:
    text = _ABBREVIATION.sub(lambda m: _ABBREVIATIONS[m.group(1)], text)
    text = re.sub(r"\bNo\.\s?(?=\d)", "number ", text)
    text = re.sub(r"(?<=\d)\s?&\s?(?=\d)", " and ", text)
    return _EN_NUMBER.sub(lambda m: _en_match(m, text), text)


# --- entry point ---------------------------------------------------------------------------------

def normalize(text: str, lang: str = "zh") -> str:
    """``text`` with numbers etc. written out for ``lang`` (zh/cmn/yue…: Chinese; en: English; others
    unchanged); inline annotations are kept as they are. Never raises on odd input."""
    if not isinstance(text, str) or not text:
        return text if isinstance(text, str) else ""
    family = lang.lower().split("-")[0].split("_")[0] if isinstance(lang, str) else ""
    rewrite = {"zh": normalize_zh, "cmn": normalize_zh, "yue": normalize_zh, "en": normalize_en}.get(family)
    if rewrite is None:
        return text
    try:
        return map_plain(text, rewrite)
    except Exception as exc:  # a bug in a rule must cost the reading of a number, not the job
        log.warning("normalisation failed, text left as it is: %s", exc)
        return text
