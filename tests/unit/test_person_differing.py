"""``core.person.differing``: which given fields of a row differ from the record held."""

from __future__ import annotations

from core.person import differing

HELD = {"id_number": "11010519491231002X", "name": "张三", "sex": "F", "birth_date": "1949-12-31",
        "household_province": "11", "residence_province": "44", "children": 2}


def test_only_given_fields_count_and_in_field_order() -> None:
    assert differing(HELD, {"name": "张三", "sex": "F"}) == ()
    assert differing(HELD, {}) == ()
    # A field the row leaves out (an empty CSV cell) says nothing; one the record lacks differs.
    assert differing(HELD, {"residence_city": "广州市", "name": "张叁"}) == ("name", "residence_city")


def test_a_value_of_another_type_differs_even_when_it_compares_equal() -> None:
    assert differing(HELD, {"children": 2}) == ()
    assert differing(HELD, {"children": True}) == ("children",)  # True == 1 in Python; not the same value
    assert differing(HELD, {"children": 2.0}) == ("children",)
