"""Province codes and the default regional-hub layout.

How this works: every node in the federation is identified by the GB/T 2260
two-digit code of the province it serves (plus ``66`` for the Xinjiang
Production and Construction Corps, which runs its own household registration
and so its own node). ``PROVINCES`` is the closed set of codes the federation
knows; anything else is a validation error. ``DEFAULT_REGIONS`` assigns each
province to exactly one of the four regional hubs; deployments may override
the layout, but the default must be a partition (tested).

Taiwan (71), Hong Kong (81) and Macau (82) are deliberately absent: they do
not run nodes and records cannot be attributed to them.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import ValidationError

PROVINCES: dict[str, str] = {
    "11": "Beijing 北京",
    "12": "Tianjin 天津",
    "13": "Hebei 河北",
    "14": "Shanxi 山西",
    "15": "Inner Mongolia 内蒙古",
    "21": "Liaoning 辽宁",
    "22": "Jilin 吉林",
    "23": "Heilongjiang 黑龙江",
    "31": "Shanghai 上海",
    "32": "Jiangsu 江苏",
    "33": "Zhejiang 浙江",
    "34": "Anhui 安徽",
    "35": "Fujian 福建",
    "36": "Jiangxi 江西",
    "37": "Shandong 山东",
    "41": "Henan 河南",
    "42": "Hubei 湖北",
    "43": "Hunan 湖南",
    "44": "Guangdong 广东",
    "45": "Guangxi 广西",
    "46": "Hainan 海南",
    "50": "Chongqing 重庆",
    "51": "Sichuan 四川",
    "52": "Guizhou 贵州",
    "53": "Yunnan 云南",
    "54": "Tibet 西藏",
    "61": "Shaanxi 陕西",
    "62": "Gansu 甘肃",
    "63": "Qinghai 青海",
    "64": "Ningxia 宁夏",
    "65": "Xinjiang 新疆",
    "66": "Xinjiang Production and Construction Corps 新疆生产建设兵团",
}

# Groupings follow the usual economic-cooperation zones rather than strict
# geography (e.g. Henan and Hubei sit with the Yangtze hub, Chongqing and
# Sichuan with the Pearl River hub) so that the heaviest migration corridors
# stay within one hub where possible.
DEFAULT_REGIONS: dict[str, tuple[str, ...]] = {
    "bohai": ("11", "12", "13", "14", "15", "21", "22", "23", "37"),
    "yangtze": ("31", "32", "33", "34", "36", "41", "42"),
    "pearl": ("35", "43", "44", "45", "46", "50", "51", "52", "53"),
    "northwest": ("54", "61", "62", "63", "64", "65", "66"),
}

REGION_NAMES: dict[str, str] = {
    "bohai": "环渤海",
    "yangtze": "泛长三角",
    "pearl": "泛珠三角",
    "northwest": "西北",
}


def check_province(field: str, value: object) -> str:
    """Return ``value`` as a known two-character province code.

    Ints are accepted because TOML configs and CLI flags naturally produce
    them (``province = 44``); bools are refused since ``True`` is an int.
    """
    if type(value) is str and value in PROVINCES:
        return value  # the common case: a known code is already stripped
    if isinstance(value, bool):
        raise ValidationError(field, f"province code must be a 2-digit string, got {value!r}",
                              rule="province code must be a 2-digit string")
    if isinstance(value, int):
        code = str(value)
    elif isinstance(value, str):
        code = value.strip()
    else:
        raise ValidationError(
            field, f"province code must be a 2-digit string, got {type(value).__name__}"
        )
    if code not in PROVINCES:
        raise ValidationError(field, f"unknown province code '{code}'", rule="unknown province code")
    return code


def province_name(code: object) -> str:
    """The "English 中文" name of a province code (raises on unknown codes)."""
    return PROVINCES[check_province("province", code)]


def region_of(code: object, regions: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """The region (hub) name that serves ``code`` under ``regions``."""
    normalised = check_province("province", code)
    for region, members in (DEFAULT_REGIONS if regions is None else regions).items():
        if normalised in members:
            return region
    raise ValidationError("province", f"province code '{normalised}' is in no region")
