"""Dialects by name, and the region -> dialect map for ``dialect: "auto"``.

The catalog itself (codes, names, aliases, which engine kinds speak each) is the protocol's:
``voicefleet.protocol.dialects``; this module finds entries in it by any name and maps Chinese
provinces and cities to the dialect spoken there.

No I/O and no heavy imports: the control plane, the agents and the CLI all use this.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from voicefleet.protocol.dialects import (  # noqa: F401  (re-exported: the catalog's users import it here)
    COSYVOICE3,
    DIALECT_CATALOG,
    ENGINE_KINDS,
    ESPEAK,
    STUDENT,
    Dialect,
)

_BY_CODE: dict[str, Dialect] = {d.code: d for d in DIALECT_CATALOG}


def _key(name: str) -> str:
    """Lookup key: case-folded, without spaces, hyphens, underscores or apostrophes ("Min Nan" == "minnan")."""
    return re.sub(r"[\s\-_'’.]+", "", name.casefold())


def _index() -> dict[str, Dialect]:
    index: dict[str, Dialect] = {}
    for dialect in DIALECT_CATALOG:
        for name in (dialect.code, dialect.name_zh, dialect.name_en, *dialect.aliases):
            other = index.setdefault(_key(name), dialect)
            if other is not dialect:  # an alias must name one dialect only
                raise ValueError(f"alias {name!r} names both {other.code} and {dialect.code}")
    return index


_BY_NAME = _index()


def lookup(name_or_code: str) -> Dialect | None:
    """The dialect named by a code, its Chinese or English name or any alias (case-insensitive); else None."""
    if not isinstance(name_or_code, str):
        return None
    return _BY_NAME.get(_key(name_or_code))


def codes() -> tuple[str, ...]:
    """Every dialect code, in catalog order."""
    return tuple(_BY_CODE)


def engines_for(code: str) -> frozenset[str]:
    """Engine kinds that can speak the dialect (a code or any alias); empty for an unknown one."""
    dialect = lookup(code)
    return dialect.engines if dialect else frozenset()


def dialects_for_engine(engine: str) -> tuple[str, ...]:
    """Dialect codes an engine kind can speak, for its Capabilities.dialects ("student" -> ())."""
    return tuple(d.code for d in DIALECT_CATALOG if engine in d.engines)


# ------------------------------------------------------------------------------ regions
# GB/T 2260 codes: the first two digits are the province, the first four the prefecture-level city.
# A region maps to a dialect only where that dialect is its main local speech: a caller served in
# the wrong dialect understands less than one served in Mandarin, so mixed or other-dialect areas
# (Min Dong Fuzhou, Wu-but-not-Shanghainese Suzhou...) map to None.

_PROVINCES: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("11", None, ("北京", "beijing", "peking")),
    ("12", "tianjin", ("天津", "tianjin")),
    ("13", None, ("河北", "hebei")),
    ("14", "shanxi", ("山西", "shanxi")),
    ("15", None, ("内蒙古", "內蒙古", "inner mongolia", "neimenggu")),
    ("21", "dongbei", ("辽宁", "遼寧", "liaoning")),
    ("22", "dongbei", ("吉林", "jilin")),
    ("23", "dongbei", ("黑龙江", "黑龍江", "heilongjiang")),
    ("31", "wuu", ("上海", "shanghai")),
    ("32", None, ("江苏", "江蘇", "jiangsu")),
    ("33", None, ("浙江", "zhejiang")),
    ("34", None, ("安徽", "anhui")),
    ("35", "nan", ("福建", "fujian")),
    ("36", "jiangxi", ("江西", "jiangxi")),
    ("37", "shandong", ("山东", "山東", "shandong")),
    ("41", "henan", ("河南", "henan")),
    ("42", "hubei", ("湖北", "hubei")),
    ("43", "hunan", ("湖南", "hunan")),
    ("44", "yue", ("广东", "廣東", "guangdong")),
    ("45", None, ("广西", "廣西", "guangxi")),
    ("46", None, ("海南", "hainan")),
    ("50", "sichuan", ("重庆", "重慶", "chongqing", "chungking")),
    ("51", "sichuan", ("四川", "sichuan", "szechuan", "szechwan")),
    ("52", "guizhou", ("贵州", "貴州", "guizhou")),
    ("53", "yunnan", ("云南", "雲南", "yunnan")),
    ("54", None, ("西藏", "tibet", "xizang")),
    ("61", "shaanxi", ("陕西", "陝西", "shaanxi")),
    ("62", "gansu", ("甘肃", "甘肅", "gansu")),
    ("63", None, ("青海", "qinghai")),
    ("64", "ningxia", ("宁夏", "寧夏", "ningxia")),
    ("65", None, ("新疆", "xinjiang")),
    ("71", "nan", ("台湾", "台灣", "臺灣", "taiwan", "台北", "臺北", "taipei", "高雄", "kaohsiung", "台中", "臺中",
                   "taichung", "台南", "臺南", "tainan")),  # GB/T 2260 gives Taiwan one code, no cities
    ("81", "yue", ("香港", "hong kong", "hongkong", "hk", "hksar", "九龙", "九龍", "kowloon")),
    ("82", "yue", ("澳门", "澳門", "macau", "macao")),
)

_KEEP = "keep"  # a city that speaks its province's dialect

# (city code, dialect or None or _KEEP, names). Only cities people are likely to name, plus the
# ones whose speech differs from their province's.
_CITIES: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("130100", _KEEP, ("石家庄", "shijiazhuang")),
    ("140100", _KEEP, ("太原", "taiyuan")),
    ("140200", _KEEP, ("大同", "datong")),
    ("210100", _KEEP, ("沈阳", "瀋陽", "shenyang")),
    ("210200", _KEEP, ("大连", "大連", "dalian")),
    ("220100", _KEEP, ("长春", "長春", "changchun")),
    ("230100", _KEEP, ("哈尔滨", "哈爾濱", "harbin", "haerbin")),
    ("230600", _KEEP, ("大庆", "daqing")),
    ("320100", _KEEP, ("南京", "nanjing")),
    ("320500", _KEEP, ("苏州", "蘇州", "suzhou")),
    ("330100", _KEEP, ("杭州", "hangzhou")),
    ("340100", _KEEP, ("合肥", "hefei")),
    ("350100", None, ("福州", "fuzhou")),  # Min Dong, not Minnan
    ("350200", _KEEP, ("厦门", "廈門", "xiamen", "amoy")),
    ("350300", None, ("莆田", "putian")),  # Puxian Min
    ("350400", None, ("三明", "sanming")),  # Min Zhong and Hakka
    ("350500", _KEEP, ("泉州", "quanzhou")),
    ("350600", _KEEP, ("漳州", "zhangzhou")),
    ("350700", None, ("南平", "nanping")),  # Min Bei
    ("350800", None, ("龙岩", "龍岩", "longyan")),  # Hakka counties around a Minnan city
    ("350900", None, ("宁德", "ningde")),  # Min Dong
    ("360100", _KEEP, ("南昌", "nanchang")),
    ("360400", _KEEP, ("九江", "jiujiang")),
    ("360700", "hak", ("赣州", "贛州", "ganzhou")),  # Hakka heartland
    ("370100", _KEEP, ("济南", "濟南", "jinan")),
    ("370200", _KEEP, ("青岛", "青島", "qingdao", "tsingtao")),
    ("370600", _KEEP, ("烟台", "yantai")),
    ("410100", _KEEP, ("郑州", "鄭州", "zhengzhou")),
    ("410200", _KEEP, ("开封", "kaifeng")),
    ("410300", _KEEP, ("洛阳", "洛陽", "luoyang")),
    ("420100", _KEEP, ("武汉", "武漢", "wuhan")),
    ("420500", _KEEP, ("宜昌", "yichang")),
    ("430100", _KEEP, ("长沙", "長沙", "changsha")),
    ("430200", _KEEP, ("株洲", "zhuzhou")),
    ("430300", _KEEP, ("湘潭", "xiangtan")),
    ("440100", _KEEP, ("广州", "廣州", "guangzhou", "canton")),
    ("440300", _KEEP, ("深圳", "shenzhen")),
    ("440400", _KEEP, ("珠海", "zhuhai")),
    ("440500", "nan", ("汕头", "汕頭", "shantou", "swatow")),  # Chaoshan Min (Teochew), a Southern Min variety
    ("440600", _KEEP, ("佛山", "foshan")),
    ("441400", "hak", ("梅州", "meizhou")),  # Hakka
    ("441500", "nan", ("汕尾", "shanwei")),  # Hailufeng Min
    ("441600", "hak", ("河源", "heyuan")),  # Hakka
    ("441900", _KEEP, ("东莞", "東莞", "dongguan")),
    ("442000", _KEEP, ("中山", "zhongshan")),
    ("445100", "nan", ("潮州", "chaozhou", "teochew")),
    ("445200", "nan", ("揭阳", "揭陽", "jieyang")),
    ("450100", _KEEP, ("南宁", "南寧", "nanning")),
    ("460100", _KEEP, ("海口", "haikou")),
    ("510100", _KEEP, ("成都", "chengdu")),
    ("510300", _KEEP, ("自贡", "zigong")),
    ("510500", _KEEP, ("泸州", "luzhou")),
    ("510600", _KEEP, ("德阳", "deyang")),
    ("510700", _KEEP, ("绵阳", "綿陽", "mianyang")),
    ("511100", _KEEP, ("乐山", "樂山", "leshan")),
    ("511300", _KEEP, ("南充", "nanchong")),
    ("511500", _KEEP, ("宜宾", "宜賓", "yibin")),
    ("520100", _KEEP, ("贵阳", "貴陽", "guiyang")),
    ("520300", _KEEP, ("遵义", "遵義", "zunyi")),
    ("530100", _KEEP, ("昆明", "kunming")),
    ("532900", _KEEP, ("大理", "dali")),
    ("540100", _KEEP, ("拉萨", "lhasa")),
    ("610100", _KEEP, ("西安", "xian", "xi'an", "sian")),
    ("610300", _KEEP, ("宝鸡", "寶雞", "baoji")),
    ("610400", _KEEP, ("咸阳", "鹹陽", "xianyang")),
    ("620100", _KEEP, ("兰州", "蘭州", "lanzhou")),
    ("620500", _KEEP, ("天水", "tianshui")),
    ("630100", _KEEP, ("西宁", "xining")),
    ("640100", _KEEP, ("银川", "銀川", "yinchuan")),
    ("650100", _KEEP, ("乌鲁木齐", "urumqi", "wulumuqi")),
)

_PROVINCE_DIALECT: dict[str, str | None] = {code: dialect for code, dialect, _ in _PROVINCES}
_CITY_DIALECT: dict[str, str | None] = {code[:4]: d for code, d, _ in _CITIES if d != _KEEP}
_CODE_LENGTHS = (2, 4, 6, 9, 12)  # province, city, county, and the statistics office's longer codes
# Administrative suffixes dropped before matching a name ("四川省" -> "四川", "Hong Kong SAR" -> "hongkong").
_SUFFIXES = ("特别行政区", "特別行政區", "壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "省", "市",
             "specialadministrativeregion", "province", "municipality", "city", "sar")


def _region_names() -> tuple[dict[str, str], dict[str, str]]:
    """(normalised name -> code) for cities and for provinces, each used on its own so a city wins."""
    cities = {_key(name): code for code, _, names in _CITIES for name in names}
    provinces = {_key(name): code + "0000" for code, _, names in _PROVINCES for name in names}
    return cities, provinces


_CITY_NAMES, _PROVINCE_NAMES = _region_names()


def _strip_suffix(key: str) -> str:
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def _first_contained(text: str, names: dict[str, str], prefix: str = "") -> str | None:
    """The code of the Chinese name in ``names`` that occurs earliest in ``text`` (longest on a tie)."""
    found = [(text.index(name), -len(name), code) for name, code in names.items()
             if not name.isascii() and name in text and code.startswith(prefix)]
    return min(found)[2] if found else None


def _contained_name(text: str) -> str | None:
    """For an address like 广东省汕头市金平区: the most specific region it names.

    A city counts only inside the province named first, so the street in 上海市中山路 is not the city 中山.
    """
    province = _first_contained(text, _PROVINCE_NAMES)
    city = _first_contained(text, _CITY_NAMES, province[:2] if province else "")
    return city or province


def region_code(region: str | int) -> str | None:
    """A GB/T 2260 code (2 to 12 digits) or a Chinese/English province or city name -> its 6-digit code."""
    text = str(region).strip()
    if text.isdigit():
        if len(text) not in _CODE_LENGTHS or text[:2] not in _PROVINCE_DIALECT:
            return None
        return text[:6].ljust(6, "0")
    key = _key(text)
    if not key:
        return None
    for candidate in (key, _strip_suffix(key)):
        code = _CITY_NAMES.get(candidate) or _PROVINCE_NAMES.get(candidate)
        if code:
            return code
    return None if key.isascii() else _contained_name(key)


def dialect_for_region(region: str | int | None) -> str | None:
    """The dialect code people speak in a Chinese province or city (GB/T 2260 code or name).

    None for an unknown region and for one whose local speech is Mandarin or not in the catalog.
    """
    code = None if region is None else region_code(region)
    if code is None:
        return None
    if code[:4] in _CITY_DIALECT:
        return _CITY_DIALECT[code[:4]]
    return _PROVINCE_DIALECT.get(code[:2])


def resolve_auto(region: str | int | None, servable: Collection[str]) -> str | None:
    """``dialect: "auto"``: the region's dialect if some online engine can speak it, else None (Mandarin).

    A call centre answers in the caller's dialect when it can and in Mandarin otherwise, so a
    dialect nobody can serve right now is not an error.
    """
    dialect = dialect_for_region(region)
    return dialect if dialect in servable else None
