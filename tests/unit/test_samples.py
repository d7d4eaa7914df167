"""Sample migrants: deterministic, valid, and shaped like real flows."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationError
from core.idnumber import id_birth_date, id_sex
from core.person import validate_person
from core.provinces import PROVINCES
from core.samples import AREA_PREFIX, CITIES, sample_people, sample_person

TODAY = date(2026, 11, 29)


def age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def test_tables_cover_every_province() -> None:
    assert set(CITIES) == set(PROVINCES) == set(AREA_PREFIX)
    for code, prefix in AREA_PREFIX.items():
        assert prefix.startswith(code) and len(prefix) == 4


def test_deterministic_for_a_seed() -> None:
    first = list(sample_people(random.Random(7), 50, today=TODAY))
    again = list(sample_people(random.Random(7), 50, today=TODAY))
    other = list(sample_people(random.Random(8), 50, today=TODAY))
    assert first == again
    assert first != other


def test_bulk_sample_is_valid_and_plausible() -> None:
    people = list(sample_people(random.Random(1), 1000, today=TODAY))
    assert len(people) == 1000
    assert len({p["id_number"] for p in people}) == 1000
    intra = 0
    for person in people:
        assert validate_person(person, today=TODAY) == person
        id_number = str(person["id_number"])
        assert id_number[:2] == person["household_province"]
        birth = id_birth_date(id_number)
        assert 16 <= age_on(birth, TODAY) <= 50
        assert person["sex"] == id_sex(id_number)
        assert person["residence_city"] in CITIES[str(person["residence_province"])]
        assert 2 <= len(str(person["name"])) <= 3
        if person["marriage_cert_status"] in ("none", "requested"):
            assert "marriage_cert_no" not in person
        else:
            assert str(person["marriage_cert_no"]).startswith(id_number[:6])
        intra += person["household_province"] == person["residence_province"]
    # ~20% stay in their home province; allow sampling noise.
    assert 0.14 < intra / len(people) < 0.26
    destinations = Counter(p["residence_province"] for p in people)
    assert destinations.most_common(1)[0][0] == "44"


def test_restricted_provinces() -> None:
    people = list(sample_people(random.Random(3), 200, provinces=["44", 51], today=TODAY))
    for person in people:
        assert {person["household_province"], person["residence_province"]} <= {"44", "51"}
    assert any(p["household_province"] != p["residence_province"] for p in people)


def test_single_province_is_all_intra_and_moves_between_cities() -> None:
    people = list(sample_people(random.Random(4), 30, provinces=["44"], today=TODAY))
    assert all(p["household_province"] == p["residence_province"] == "44" for p in people)


@pytest.mark.parametrize(
    ("provinces", "reason"),
    [
        ([], "must name at least one province"),
        ("44", "must be a sequence of codes, not a string"),
        (["44", "99"], "unknown province code '99'"),
    ],
)
def test_bad_province_lists(provinces: object, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        bad: list[str] = provinces  # type: ignore[assignment]
        list(sample_people(random.Random(0), 1, provinces=bad, today=TODAY))
    assert str(info.value) == f"provinces: {reason}"


def test_zero_people() -> None:
    assert list(sample_people(random.Random(0), 0, today=TODAY)) == []


def test_sample_person_uses_given_provinces() -> None:
    person = sample_person(random.Random(5), household="66", residence="65", today=TODAY)
    assert person["household_province"] == "66"
    assert person["residence_province"] == "65"
    assert str(person["id_number"]).startswith("66")


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    household=st.sampled_from(sorted(PROVINCES)),
    residence=st.sampled_from(sorted(PROVINCES)),
    today=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
)
def test_every_sample_validates(seed: int, household: str, residence: str, today: date) -> None:
    rng = random.Random(seed)
    person = sample_person(rng, household=household, residence=residence, today=today)
    assert validate_person(person, today=today) == person
    assert 16 <= age_on(id_birth_date(str(person["id_number"])), today) <= 50


@pytest.mark.parametrize("today", [date(2028, 2, 29), date(2027, 2, 28), date(2027, 3, 1)])
def test_leap_day_edges(today: date) -> None:
    for person in sample_people(random.Random(11), 300, today=today):
        assert validate_person(person, today=today) == person
        assert 16 <= age_on(id_birth_date(str(person["id_number"])), today) <= 50
