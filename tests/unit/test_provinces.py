"""Province codes and the default four-hub layout."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.provinces import (
    DEFAULT_REGIONS,
    PROVINCES,
    REGION_NAMES,
    check_province,
    province_name,
    region_of,
)


def test_thirty_one_provinces_plus_the_corps() -> None:
    assert len(PROVINCES) == 32
    assert "66" in PROVINCES and "新疆生产建设兵团" in PROVINCES["66"]
    for code in ("71", "81", "82"):  # Taiwan, Hong Kong, Macau run no node
        assert code not in PROVINCES


def test_names_are_english_then_chinese() -> None:
    assert PROVINCES["11"] == "Beijing 北京"
    assert PROVINCES["44"] == "Guangdong 广东"
    for name in PROVINCES.values():
        english, _, chinese = name.rpartition(" ")
        assert english.isascii() and english
        assert chinese and not chinese.isascii()


def test_every_province_is_in_exactly_one_region() -> None:
    members = [code for codes in DEFAULT_REGIONS.values() for code in codes]
    assert sorted(members) == sorted(PROVINCES)
    assert len(members) == len(set(members))


def test_default_regions_exact() -> None:
    assert DEFAULT_REGIONS == {
        "bohai": ("11", "12", "13", "14", "15", "21", "22", "23", "37"),
        "yangtze": ("31", "32", "33", "34", "36", "41", "42"),
        "pearl": ("35", "43", "44", "45", "46", "50", "51", "52", "53"),
        "northwest": ("54", "61", "62", "63", "64", "65", "66"),
    }
    assert set(REGION_NAMES) == set(DEFAULT_REGIONS)
    assert REGION_NAMES["yangtze"] == "泛长三角"


@pytest.mark.parametrize("value", ["44", 44, " 44 "])
def test_check_province_normalises(value: object) -> None:
    assert check_province("household_province", value) == "44"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("99", "unknown province code '99'"),
        (99, "unknown province code '99'"),
        ("4", "unknown province code '4'"),
        ("044", "unknown province code '044'"),
        ("81", "unknown province code '81'"),
        ("", "unknown province code ''"),
        (True, "province code must be a 2-digit string, got True"),
        (44.0, "province code must be a 2-digit string, got float"),
        (None, "province code must be a 2-digit string, got NoneType"),
    ],
)
def test_check_province_rejects(value: object, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_province("residence_province", value)
    assert info.value.field == "residence_province"
    assert str(info.value) == f"residence_province: {reason}"


def test_province_name() -> None:
    corps = "Xinjiang Production and Construction Corps 新疆生产建设兵团"
    assert province_name("66") == corps
    assert province_name(50) == "Chongqing 重庆"
    with pytest.raises(ValidationError, match="unknown province code '00'"):
        province_name("00")


def test_region_of() -> None:
    assert region_of("44") == "pearl"
    assert region_of(66) == "northwest"
    assert region_of("11", {"all": tuple(PROVINCES)}) == "all"
    with pytest.raises(ValidationError, match="is in no region"):
        region_of("11", {"south": ("44",)})
