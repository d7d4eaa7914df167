"""First-generation (GB 11643-1989) 15-digit ID numbers, converted to 18 digits on input."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationError
from core.idnumber import check_id_number, from_15_digits, make_id_number, normalise_id_number
from core.person import check_value, validate_person

TODAY = date(2026, 12, 1)


def test_the_standards_example_converts_to_its_18_digit_form() -> None:
    # GB 11643-1999's worked example, whose first-generation form drops "19" and the check character.
    assert from_15_digits("110105491231002") == "11010519491231002X"
    assert normalise_id_number(" 110105491231002 ") == "11010519491231002X"


@given(st.from_regex(r"[1-6][0-9]{5}", fullmatch=True),
       st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31)), st.integers(0, 999))
def test_conversion_inserts_19_and_appends_the_check_character(area: str, birth: date, serial: int) -> None:
    eighteen = make_id_number(area, birth, serial)
    fifteen = eighteen[:6] + eighteen[8:17]
    assert normalise_id_number(fifteen) == eighteen
    assert check_id_number(normalise_id_number(fifteen)) == eighteen


@pytest.mark.parametrize("bad, reason", [
    ("11010549123100X", "15 digits"),   # no check character in the first generation
    ("110105491331002", "not a date"),  # month 13
    ("110105490230002", "not a date"),  # 30 February 1949
    ("１１０105491231002", "15 digits"),  # full-width digits
])
def test_a_bad_15_digit_number_is_refused_naming_the_field(bad: str, reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        normalise_id_number(bad, "id_number")
    assert err.value.field == "id_number" and reason in str(err.value)
    assert bad not in err.value.log_text


def test_18_digit_numbers_are_unchanged_and_other_lengths_refused() -> None:
    assert normalise_id_number("11010519491231002x") == "11010519491231002X"
    with pytest.raises(ValidationError, match="must be 18 characters, got 16"):
        normalise_id_number("1101051949123100")


def test_a_person_written_with_a_15_digit_number_is_held_under_the_18_digit_one() -> None:
    person = validate_person({"id_number": "110105491231002", "name": "张三", "sex": "F", "birth_date": "1949-12-31",
                              "household_province": "11", "residence_province": "44"}, today=TODAY)
    assert person["id_number"] == "11010519491231002X"
    update = validate_person({"id_number": "110105491231002"}, today=TODAY, partial=True)
    assert update == {"id_number": "11010519491231002X"}


def test_a_peer_sending_a_15_digit_number_is_refused_as_not_normal_form() -> None:
    # A local write always stores 18 digits, so a received 15-digit value was not written by this schema.
    with pytest.raises(ValidationError, match="not in normal form"):
        check_value("id_number", "110105491231002", today=TODAY)
