"""GB 11643-1999 resident ID numbers."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationError
from core.idnumber import (
    check_char,
    check_id_number,
    id_birth_date,
    id_province,
    id_sex,
    make_id_number,
)

# The worked example from GB 11643-1999 appendix.
STANDARD_EXAMPLE = "11010519491231002X"

areas = st.from_regex(r"[1-6][0-9]{5}", fullmatch=True)
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 11, 29))
serials = st.integers(min_value=0, max_value=999)


def test_standard_example() -> None:
    assert check_char(STANDARD_EXAMPLE[:17]) == "X"
    assert check_id_number(STANDARD_EXAMPLE) == STANDARD_EXAMPLE
    assert id_birth_date(STANDARD_EXAMPLE) == date(1949, 12, 31)
    assert id_sex(STANDARD_EXAMPLE) == "F"
    assert id_province(STANDARD_EXAMPLE) == "11"


def test_lowercase_x_and_whitespace_normalised() -> None:
    assert check_id_number(" 11010519491231002x ") == STANDARD_EXAMPLE


def test_make_id_number_matches_example() -> None:
    assert make_id_number("110105", date(1949, 12, 31), 2) == STANDARD_EXAMPLE


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1101051949123100", "must be 18 characters, got 16"),
        (STANDARD_EXAMPLE + "1", "must be 18 characters, got 19"),
        ("", "must be 18 characters, got 0"),
        ("1101051949123100AX", "first 17 characters must be digits 0-9"),
        ("１１０１０５19491231002X", "first 17 characters must be digits 0-9"),
        ("11010519491231002Y", "last character must be a digit 0-9 or X"),
        ("110105199913400023", "birth date 19991340 is not a date"),
        ("110105199902290023", "birth date 19990229 is not a date"),
        ("110105194912310023", "bad checksum (expected 'X', got '3')"),
        (110105194912310023, "must be a string, got int"),
        (None, "must be a string, got NoneType"),
    ],
)
def test_rejects(value: object, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_id_number(value)
    assert info.value.field == "id_number"
    assert str(info.value) == f"id_number: {reason}"


def test_field_name_is_reported() -> None:
    with pytest.raises(ValidationError, match=r"^spouse_id: must be 18 characters"):
        check_id_number("123", field="spouse_id")


def test_sex_from_serial_parity() -> None:
    assert id_sex(make_id_number("440106", date(1990, 5, 1), 121)) == "M"
    assert id_sex(make_id_number("440106", date(1990, 5, 1), 120)) == "F"


@pytest.mark.parametrize(
    ("area6", "serial", "field"),
    [("44010", 1, "area6"), ("44010a", 1, "area6"), ("440106", 1000, "serial3"),
     ("440106", -1, "serial3"), ("440106", True, "serial3")],
)  # fmt: skip
def test_make_id_number_rejects_bad_parts(area6: str, serial: int, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_id_number(area6, date(1990, 1, 1), serial)
    assert info.value.field == field


@given(areas, births, serials)
def test_made_ids_are_accepted_and_round_trip(area6: str, birth: date, serial: int) -> None:
    made = make_id_number(area6, birth, serial)
    assert check_id_number(made) == made
    assert id_birth_date(made) == birth
    assert id_sex(made) == ("M" if serial % 2 else "F")
    assert id_province(made) == area6[:2]


@given(areas, births, serials, st.integers(0, 17), st.integers(1, 10))
def test_any_single_character_change_is_rejected(
    area6: str, birth: date, serial: int, position: int, delta: int
) -> None:
    made = make_id_number(area6, birth, serial)
    alphabet = "0123456789X" if position == 17 else "0123456789"
    current = alphabet.index(made[position])
    replacement = alphabet[(current + delta) % len(alphabet)]
    if replacement == made[position]:
        return  # delta wrapped around to the same character
    mutated = made[:position] + replacement + made[position + 1 :]
    with pytest.raises(ValidationError) as info:
        check_id_number(mutated)
    assert info.value.field == "id_number"
