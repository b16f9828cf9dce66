"""The Chinese dialects a job may ask for (the set CosyVoice3 covers), defined once.

Codes are ISO 639-3 where one exists, else the province name; they are what jobs, assignments and
``Capabilities.dialects`` carry. The instruction texts are upstream's own (FunAudioLLM/CosyVoice
``cosyvoice/utils/common.py``, ``instruct_list``: "请用四川话表达。" ...), because those are the
phrasings CosyVoice3 was trained to follow. Upstream names 17 dialects there; its README and paper
say "18"; Hakka (``hak``) is in our catalog but not in upstream's list, so its instruction follows
the same form unverified (``Dialect.upstream`` is False).

Lookups by name and the region -> dialect map live in voicefleet/text/dialects.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Engine kinds (the names in VOICEFLEET_ENGINE) that can speak a dialect.
COSYVOICE3 = "cosyvoice3"
ESPEAK = "espeak"
STUDENT = "student"  # Mandarin only: speaks no dialect
ENGINE_KINDS: tuple[str, ...] = (COSYVOICE3, ESPEAK, STUDENT)


@dataclass(frozen=True)
class Dialect:
    code: str  # stable: what jobs, assignments and capabilities carry
    name_zh: str  # the name upstream's instruction uses, e.g. 四川话
    name_en: str
    aliases: tuple[str, ...]  # other names people use (matched case-insensitively)
    engines: frozenset[str]  # engine kinds that can speak it
    upstream: bool = True  # listed in upstream's CosyVoice3 instruct_list

    @property
    def instruction(self) -> str:
        """The CosyVoice3 instruction text asking for this dialect (upstream's form)."""
        return f"请用{self.name_zh}表达。"


_CV3 = frozenset({COSYVOICE3})

DIALECT_CATALOG: tuple[Dialect, ...] = (
    # eSpeak NG 1.52 has a Cantonese voice (edge_agent/engines/espeak.py); upstream's instruction says 广东话.
    Dialect("yue", "广东话", "Cantonese",
            ("粤语", "粵語", "廣東話", "广府话", "廣府話", "广州话", "廣州話", "香港话", "港话", "粤话",
             "粤方言", "cantonese", "yue", "yueyu", "guangdonghua", "guangdong dialect"),
            frozenset({COSYVOICE3, ESPEAK})),
    Dialect("nan", "闽南话", "Minnan (Hokkien)",
            ("閩南話", "闽南语", "閩南語", "台语", "台語", "臺語", "台湾话", "台灣話", "河洛话", "福佬话",
             "厦门话", "泉州话", "潮汕话", "minnan", "min nan", "southern min", "hokkien", "taiwanese",
             "taiwanese hokkien", "minnanhua"),
            _CV3),
    Dialect("wuu", "上海话", "Shanghainese (Wu)",
            ("上海話", "沪语", "滬語", "上海闲话", "吴语", "吳語", "shanghainese", "shanghai", "shanghai dialect", "wu",
             "wu chinese", "shanghaihua"),
            _CV3),
    Dialect("hak", "客家话", "Hakka",
            ("客家話", "客家语", "客家語", "客语", "客語", "hakka", "kejia", "kejiahua"),
            _CV3, upstream=False),
    Dialect("sichuan", "四川话", "Sichuanese",
            ("四川話", "川话", "川話", "四川方言", "川渝话", "成都话", "重庆话", "重慶話", "sichuanese", "sichuan",
             "sichuan dialect", "sichuanhua", "szechuanese", "szechuan"),
            _CV3),
    Dialect("dongbei", "东北话", "Northeastern",
            ("東北話", "东北方言", "东北官话", "dongbei", "dongbeihua", "northeastern", "northeastern mandarin",
             "northeast dialect", "northeastern dialect"),
            _CV3),
    Dialect("tianjin", "天津话", "Tianjin",
            ("天津話", "天津方言", "tianjin", "tianjinese", "tianjin dialect", "tianjinhua"), _CV3),
    Dialect("shandong", "山东话", "Shandong",
            ("山東話", "山东方言", "shandong", "shandong dialect", "shandonghua"), _CV3),
    Dialect("henan", "河南话", "Henan",
            ("河南話", "河南方言", "henan", "henan dialect", "henanhua"), _CV3),
    # Upstream's README spells the two by tone: Shan3xi (陕西) and Shan1xi (山西).
    Dialect("shaanxi", "陕西话", "Shaanxi",
            ("陝西話", "陕西方言", "关中话", "西安话", "shaanxi", "shaanxi dialect", "shan3xi", "shaanxihua"), _CV3),
    Dialect("shanxi", "山西话", "Shanxi",
            ("山西方言", "晋语", "晉語", "太原话", "shanxi", "shanxi dialect", "shan1xi", "jin chinese", "shanxihua"),
            _CV3),
    Dialect("gansu", "甘肃话", "Gansu",
            ("甘肅話", "甘肃方言", "兰州话", "gansu", "gansu dialect", "gansuhua"), _CV3),
    Dialect("ningxia", "宁夏话", "Ningxia",
            ("寧夏話", "宁夏方言", "银川话", "ningxia", "ningxia dialect", "ningxiahua"), _CV3),
    Dialect("hubei", "湖北话", "Hubei",
            ("湖北話", "湖北方言", "武汉话", "武漢話", "hubei", "hubei dialect", "hubeihua", "wuhan dialect"), _CV3),
    Dialect("hunan", "湖南话", "Hunan",
            ("湖南話", "湖南方言", "湘语", "湘語", "长沙话", "長沙話", "hunan", "hunanese", "hunan dialect",
             "xiang chinese", "hunanhua"),
            _CV3),
    Dialect("jiangxi", "江西话", "Jiangxi",
            ("江西話", "江西方言", "赣语", "贛語", "南昌话", "jiangxi", "jiangxi dialect", "gan chinese", "jiangxihua"),
            _CV3),
    Dialect("yunnan", "云南话", "Yunnan",
            ("雲南話", "云南方言", "昆明话", "yunnan", "yunnan dialect", "yunnanhua"), _CV3),
    Dialect("guizhou", "贵州话", "Guizhou",
            ("貴州話", "贵州方言", "贵阳话", "guizhou", "guizhou dialect", "guizhouhua"), _CV3),
)


# code -> English name: what the API's error messages and the docs list.
DIALECTS: dict[str, str] = {d.code: d.name_en for d in DIALECT_CATALOG}
