"""The dialect catalog, region -> dialect mapping and dialect: "auto" resolution."""

from __future__ import annotations

import pytest

from voicefleet.protocol import DIALECTS
from voicefleet.text.dialects import (
    COSYVOICE3,
    DIALECT_CATALOG,
    ESPEAK,
    STUDENT,
    codes,
    dialect_for_region,
    dialects_for_engine,
    engines_for,
    lookup,
    region_code,
    resolve_auto,
)

# Upstream's CosyVoice3 instruct_list (cosyvoice/utils/common.py), dialect entries verbatim.
UPSTREAM_DIALECT_INSTRUCTIONS = {
    "请用广东话表达。", "请用东北话表达。", "请用甘肃话表达。", "请用贵州话表达。", "请用河南话表达。",
    "请用湖北话表达。", "请用湖南话表达。", "请用江西话表达。", "请用闽南话表达。", "请用宁夏话表达。",
    "请用山西话表达。", "请用陕西话表达。", "请用山东话表达。", "请用上海话表达。", "请用四川话表达。",
    "请用天津话表达。", "请用云南话表达。",
}


def test_codes_are_the_protocol_dialects():
    assert set(codes()) == set(DIALECTS)
    assert len(codes()) == len(DIALECT_CATALOG)


def test_upstream_instructions_are_verbatim():
    assert {d.instruction for d in DIALECT_CATALOG if d.upstream} == UPSTREAM_DIALECT_INSTRUCTIONS
    assert [d.code for d in DIALECT_CATALOG if not d.upstream] == ["hak"]
    assert lookup("sichuan").instruction == "请用四川话表达。"
    assert lookup("yue").instruction == "请用广东话表达。"


@pytest.mark.parametrize("dialect", DIALECT_CATALOG, ids=lambda d: d.code)
def test_lookup_by_every_name(dialect):
    for name in (dialect.code, dialect.name_zh, dialect.name_en, *dialect.aliases):
        assert lookup(name) is dialect, name
        assert lookup(name.upper()) is dialect, name
        assert lookup(f"  {name} ") is dialect, name


@pytest.mark.parametrize("name, code", [
    ("粤语", "yue"), ("廣東話", "yue"), ("Cantonese", "yue"), ("CANTONESE", "yue"),
    ("四川话", "sichuan"), ("川话", "sichuan"), ("Sichuanese", "sichuan"), ("Sichuan dialect", "sichuan"),
    ("闽南语", "nan"), ("Min Nan", "nan"), ("min-nan", "nan"), ("Hokkien", "nan"), ("台语", "nan"),
    ("沪语", "wuu"), ("Shanghainese", "wuu"), ("shanghai", "wuu"),
    ("客家话", "hak"), ("东北话", "dongbei"), ("shan3xi", "shaanxi"), ("shan1xi", "shanxi"), ("晋语", "shanxi"),
    ("湘语", "hunan"), ("赣语", "jiangxi"), ("武汉话", "hubei"),
])
def test_lookup_examples(name, code):
    assert lookup(name).code == code


@pytest.mark.parametrize("name", ["", "普通话", "Mandarin", "klingon", "话", None, 42])
def test_lookup_unknown(name):
    assert lookup(name) is None


def test_engines():
    assert engines_for("yue") == {COSYVOICE3, ESPEAK}
    assert engines_for("粤语") == {COSYVOICE3, ESPEAK}
    assert all(COSYVOICE3 in engines_for(code) for code in codes())
    assert all(ESPEAK not in engines_for(code) for code in codes() if code != "yue")
    assert engines_for("klingon") == frozenset()
    assert dialects_for_engine(COSYVOICE3) == codes()
    assert dialects_for_engine(ESPEAK) == ("yue",)
    assert dialects_for_engine(STUDENT) == ()


@pytest.mark.parametrize("region, code", [
    ("510000", "sichuan"), ("510100", "sichuan"), ("510104", "sichuan"), ("5101", "sichuan"), ("51", "sichuan"),
    (510100, "sichuan"), ("500000", "sichuan"), ("440000", "yue"), ("440100", "yue"), ("810000", "yue"),
    ("820000", "yue"), ("310000", "wuu"), ("210000", "dongbei"), ("220000", "dongbei"), ("230100", "dongbei"),
    ("350000", "nan"), ("350200", "nan"), ("710000", "nan"), ("120000", "tianjin"), ("370200", "shandong"),
    ("410000", "henan"), ("610100", "shaanxi"), ("140100", "shanxi"), ("620000", "gansu"), ("640000", "ningxia"),
    ("420000", "hubei"), ("430000", "hunan"), ("360000", "jiangxi"), ("530000", "yunnan"), ("520000", "guizhou"),
    # Cities whose speech differs from their province's.
    ("440500", "nan"), ("445100", "nan"), ("441400", "hak"), ("360700", "hak"), ("350100", None),
    ("510100000000", "sichuan"),  # the statistics office's 12-digit form
])
def test_region_codes(region, code):
    assert dialect_for_region(region) == code


@pytest.mark.parametrize("region, code", [
    ("四川", "sichuan"), ("四川省", "sichuan"), ("成都", "sichuan"), ("成都市", "sichuan"), ("Chengdu", "sichuan"),
    ("重庆", "sichuan"), ("Chongqing", "sichuan"), ("Sichuan Province", "sichuan"),
    ("Guangdong", "yue"), ("广东", "yue"), ("广州", "yue"), ("廣州", "yue"), ("Canton", "yue"), ("深圳", "yue"),
    ("Hong Kong", "yue"), ("hongkong", "yue"), ("HK", "yue"), ("Hong Kong SAR", "yue"), ("香港", "yue"),
    ("香港特别行政区", "yue"), ("澳门", "yue"), ("Macao", "yue"), ("Macau", "yue"),
    ("上海", "wuu"), ("Shanghai", "wuu"), ("沈阳", "dongbei"), ("Harbin", "dongbei"), ("吉林", "dongbei"),
    ("福建", "nan"), ("厦门", "nan"), ("Taiwan", "nan"), ("台北", "nan"), ("臺北市", "nan"), ("福州", None),
    ("汕头", "nan"), ("梅州", "hak"), ("西安", "shaanxi"), ("Xi'an", "shaanxi"), ("太原", "shanxi"),
    ("武汉", "hubei"), ("长沙", "hunan"), ("南昌", "jiangxi"), ("昆明", "yunnan"), ("贵阳", "guizhou"),
    ("兰州", "gansu"), ("银川", "ningxia"), ("天津", "tianjin"), ("青岛", "shandong"), ("郑州", "henan"),
    ("四川省成都市武侯区", "sichuan"), ("广东省汕头市金平区", "nan"), ("上海市中山路", "wuu"),
])
def test_region_names(region, code):
    assert dialect_for_region(region) == code


@pytest.mark.parametrize("region", ["北京", "Beijing", "110000", "江苏", "苏州", "浙江", "330100", "新疆", "河北"])
def test_mandarin_or_uncatalogued_regions(region):
    assert region_code(region) is not None
    assert dialect_for_region(region) is None


@pytest.mark.parametrize("region", ["", "   ", "Atlantis", "999999", "000000", "5", "1234567", "火星", None])
def test_unknown_regions(region):
    assert dialect_for_region(region) is None


def test_region_code_normalises():
    assert region_code("510104") == "510104"
    assert region_code("51") == "510000"
    assert region_code("成都") == "510100"
    assert region_code("Hong Kong") == "810000"


def test_resolve_auto():
    assert resolve_auto("510100", {"sichuan", "yue"}) == "sichuan"
    assert resolve_auto("成都", {"yue"}) is None  # nobody online speaks Sichuanese: Mandarin
    assert resolve_auto("香港", {"yue"}) == "yue"
    assert resolve_auto("Hong Kong", set()) is None
    assert resolve_auto("北京", set(codes())) is None
    assert resolve_auto("nowhere", set(codes())) is None
    assert resolve_auto(None, set(codes())) is None
    assert resolve_auto("440000", frozenset(dialects_for_engine(ESPEAK))) == "yue"
