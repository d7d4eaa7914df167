"""The person record kind: field checks, cross-field checks, CLI parsing."""

from __future__ import annotations

import random
from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ValidationError
from core.idnumber import make_id_number
from core.kinds import KINDS, Kind, get_kind, open_conflicts
from core.person import (
    FIELDS,
    KIND,
    MARITAL_STATUSES,
    MARRIAGE_CERT_STATUSES,
    REQUIRED,
    check_update,
    merge_conflicts,
    parse_field_value,
    person_provinces,
    validate_person,
)
from core.record import RecordState

TODAY = date(2026, 11, 29)
ID = make_id_number("510104", date(1990, 3, 15), 123)  # male, household Sichuan


def base(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id_number": ID,
        "name": "张伟",
        "sex": "M",
        "birth_date": "1990-03-15",
        "household_province": "51",
        "residence_province": "44",
    }
    record.update(overrides)
    return record


def full(**overrides: object) -> dict[str, object]:
    return base(
        residence_city="深圳市",
        moved_in_on="2015-06-01",
        marital_status="married",
        children=1,
        contraception="避孕套",
        marriage_cert_no="51010420150000123",
        marriage_cert_status="verified",
        last_service_on="2026-11-29",
        **overrides,
    )


def rejects(fields: dict[str, object], field: str, reason: str, *, partial: bool = False) -> None:
    with pytest.raises(ValidationError) as info:
        validate_person(fields, today=TODAY, partial=partial)
    assert info.value.field == field
    assert str(info.value) == f"{field}: {reason}"


def test_contract_constants() -> None:
    assert KIND == "person"
    assert FIELDS == (
        "id_number", "name", "sex", "birth_date", "household_province",
        "residence_province", "residence_city", "moved_in_on", "marital_status",
        "children", "contraception", "marriage_cert_no", "marriage_cert_status",
        "last_service_on",
    )  # fmt: skip
    assert REQUIRED == {
        "id_number", "name", "sex", "birth_date", "household_province", "residence_province"
    }  # fmt: skip
    assert MARITAL_STATUSES == ("unmarried", "married", "divorced", "widowed")
    assert MARRIAGE_CERT_STATUSES == (
        "none", "requested", "issued", "verified", "expired", "revoked",
    )  # fmt: skip


def test_full_record_round_trips_in_field_order() -> None:
    record = full()
    out = validate_person(record, today=TODAY)
    assert out == record
    assert list(out) == list(FIELDS)
    assert validate_person(out, today=TODAY) == out


def test_normalisation() -> None:
    out = validate_person(
        base(
            id_number=ID.lower(),
            name="  张伟 ",
            sex="m",
            birth_date=date(1990, 3, 15),
            household_province=51,
            residence_city="  ",
            children="2",
            contraception=None,
        ),
        today=TODAY,
    )
    assert out == base(children=2)


def test_full_mode_drops_absent_and_none_optionals() -> None:
    out = validate_person(base(residence_city=None, children=0), today=TODAY)
    assert "residence_city" not in out
    assert out["children"] == 0


def test_partial_keeps_none_to_clear_fields() -> None:
    out = validate_person({"residence_city": None, "children": 3}, today=TODAY, partial=True)
    assert out == {"residence_city": None, "children": 3}
    assert validate_person({}, today=TODAY, partial=True) == {}


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_missing_required(field: str) -> None:
    record = base()
    del record[field]
    rejects(record, field, "required field is missing")


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_required_cannot_be_cleared_even_in_partial(field: str) -> None:
    rejects({field: None}, field, "required field cannot be empty", partial=True)
    rejects(base(**{field: None}), field, "required field cannot be empty")


def test_unknown_field() -> None:
    rejects(base(hukou="51"), "hukou", "unknown field")
    rejects({"hukou": "51"}, "hukou", "unknown field", partial=True)


def test_not_a_mapping() -> None:
    rejects([("name", "x")], "fields", "must be a mapping, got list")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("id_number", ID[:-1] + ("0" if ID[-1] != "0" else "1"), "bad checksum"),
        ("id_number", "12345", "must be 18 characters, got 5"),
        ("name", "", "must be 1..64 characters, got an empty name"),
        ("name", "张" * 65, "must be at most 64 characters, got 65"),
        ("name", "张\n伟", "must not contain control characters"),
        ("name", 42, "must be a string, got int"),
        ("sex", "X", "must be one of M, F; got 'X'"),
        ("sex", 1, "must be one of M, F; got 1"),
        ("birth_date", "1990/03/15", "must be a date YYYY-MM-DD, got '1990/03/15'"),
        ("birth_date", "19900315", "must be a date YYYY-MM-DD, got '19900315'"),
        ("birth_date", "1990-02-30", "1990-02-30 is not a valid date"),
        ("birth_date", 19900315, "must be a date string YYYY-MM-DD, got int"),
        ("birth_date", datetime(1990, 3, 15), "must be a date YYYY-MM-DD, got a datetime"),
        ("moved_in_on", "2030-01-01", "date 2030-01-01 is in the future"),
        ("last_service_on", "2026-11-30", "date 2026-11-30 is in the future"),
        ("household_province", "99", "unknown province code '99'"),
        ("residence_province", "81", "unknown province code '81'"),
        ("marital_status", "single",
         "must be one of unmarried, married, divorced, widowed; got 'single'"),
        ("marriage_cert_status", "lost",
         "must be one of none, requested, issued, verified, expired, revoked; got 'lost'"),
        ("children", -1, "must not be negative, got -1"),
        ("children", "-1", "must not be negative, got -1"),
        ("children", True, "must be an integer, got True"),
        ("children", "two", "must be an integer, got 'two'"),
        ("children", "1.5", "must be an integer, got '1.5'"),
        ("children", 1.0, "must be an integer, got float"),
        ("children", 31, "must be at most 30, got 31"),
        ("residence_city", 44, "must be a string, got int"),
        ("contraception", "x" * 257, "must be at most 256 characters, got 257"),
    ],
)  # fmt: skip
def test_field_errors(field: str, value: object, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_person(base(**{field: value}), today=TODAY)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: {reason}")
    # The same check applies to a partial update carrying just that field.
    with pytest.raises(ValidationError) as info:
        validate_person({field: value}, today=TODAY, partial=True)
    assert info.value.field == field


def test_birth_date_must_match_id_number() -> None:
    rejects(
        base(birth_date="1990-03-16"),
        "birth_date",
        "1990-03-16 does not match id_number (which encodes 1990-03-15)",
    )


def test_sex_must_match_id_number() -> None:
    rejects(base(sex="F"), "sex", "F does not match id_number (which encodes M)")


def test_moved_in_before_birth() -> None:
    rejects(
        base(moved_in_on="1989-01-01"),
        "moved_in_on",
        "1989-01-01 is before birth_date 1990-03-15",
    )
    rejects(
        base(last_service_on="1990-03-14"),
        "last_service_on",
        "1990-03-14 is before birth_date 1990-03-15",
    )
    # Same day is fine (born where they now live is not our business).
    validate_person(base(moved_in_on="1990-03-15"), today=TODAY)


def test_partial_cross_checks_only_see_given_fields() -> None:
    # A lone sex change cannot be checked without the id_number...
    assert validate_person({"sex": "F"}, today=TODAY, partial=True) == {"sex": "F"}
    # ...so the caller re-validates the merged record, which catches it.
    merged = {**base(), **validate_person({"sex": "F"}, today=TODAY, partial=True)}
    rejects(merged, "sex", "F does not match id_number (which encodes M)")
    # Pairs present in the update are still checked.
    rejects({"id_number": ID, "sex": "F"}, "sex",
            "F does not match id_number (which encodes M)", partial=True)


def test_birth_date_today_is_not_future() -> None:
    baby = make_id_number("440106", TODAY, 2)
    out = validate_person(
        base(id_number=baby, sex="F", birth_date=TODAY.isoformat()), today=TODAY
    )
    assert out["birth_date"] == "2026-11-29"


def test_person_provinces() -> None:
    assert person_provinces(base()) == {"51", "44"}
    assert person_provinces(base(residence_province="51")) == {"51"}
    assert person_provinces({"residence_province": "44", "household_province": None}) == {"44"}
    assert person_provinces({"name": "x"}) == frozenset()
    assert person_provinces({"household_province": 51}) == {"51"}


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("children", "3", 3),
        ("children", " 0 ", 0),
        ("children", "", None),
        ("children", "null", None),
        ("residence_city", "NULL", None),
        ("residence_city", "东莞市", "东莞市"),
        ("household_province", "44", "44"),
        ("birth_date", "1990-03-15", "1990-03-15"),
    ],
)
def test_parse_field_value(field: str, text: str, value: object) -> None:
    assert parse_field_value(field, text) == value


def test_parse_field_value_errors() -> None:
    with pytest.raises(ValidationError, match=r"^hukou: unknown field$"):
        parse_field_value("hukou", "51")
    with pytest.raises(ValidationError, match=r"^children: must be an integer, got 'many'$"):
        parse_field_value("children", "many")


def test_parsed_values_validate() -> None:
    update = {f: parse_field_value(f, t) for f, t in [("children", "2"), ("residence_city", "")]}
    assert validate_person(update, today=TODAY, partial=True) == {
        "children": 2,
        "residence_city": None,
    }


def test_kinds_registry() -> None:
    kind = get_kind("person")
    assert isinstance(kind, Kind) and KINDS["person"] is kind
    assert kind.fields == FIELDS
    assert kind.validate(base(), today=TODAY) == base()
    assert kind.provinces(base()) == {"44", "51"}
    with pytest.raises(ValidationError, match=r"^kind: unknown record kind 'x'$"):
        get_kind("x")


@given(
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(st.none(), st.text(max_size=20), st.integers(-5, 50), st.booleans()),
    )
)
def test_random_updates_pass_or_name_a_field(update: dict[str, object]) -> None:
    try:
        out = validate_person(update, today=TODAY, partial=True)
    except ValidationError as error:
        assert error.field in FIELDS
        assert str(error).startswith(f"{error.field}: ")
    else:
        assert set(out) == set(update)


# -- text hygiene at write time, updates judged on what they write, value-free rules -----------

TEXT_FIELDS = ("name", "residence_city", "contraception", "marriage_cert_no")


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize(("bad", "category"), [
    ("\x1b[2J", "Cc"), ("\u009b31m", "Cc"), ("\x7f", "Cc"), ("\x1b]0;t\x07", "Cc"),
    ("\u202e", "Cf"), ("\u200b", "Cf"), ("\ufeff", "Cf"), ("\u2066", "Cf"), ("\ud800", "Cs"),
])  # fmt: skip
def test_control_and_format_characters_are_refused(field: str, bad: str, category: str) -> None:
    for fields, partial in ((base(**{field: f"张{bad}伟"}), False), ({field: f"张{bad}伟"}, True)):
        with pytest.raises(ValidationError) as info:
            validate_person(fields, today=TODAY, partial=partial)
        err = info.value
        assert err.field == field
        assert f"(Unicode {category})" in str(err) and "at position 2" in str(err)
        assert "张" not in err.log_text and bad not in err.log_text
        assert err.log_text == f"{field}: {err.rule}"


def test_text_is_nfc_normalised() -> None:
    out = validate_person(base(name="Jose\u0301", residence_city="\u1100\u1161"), today=TODAY)
    assert out["name"] == "José" and out["residence_city"] == "\uac00"
    # Brackets, ideographic spaces and private-use characters (rare name characters) are data.
    out = validate_person(base(name="[/]\u3000\ue000[link=http://x]"), today=TODAY)
    assert out["name"] == "[/]\u3000\ue000[link=http://x]"


@pytest.mark.parametrize(
    ("field", "value"),
    [("birth_date", "2030-01-01"), ("birth_date", "1990/03/15"), ("sex", "张伟"), ("children", "张伟"),
     ("marital_status", "张伟"), ("household_province", "张伟"), ("id_number", ID[:6] + "19901345" + ID[14:]),
     ("id_number", ID[:-1] + ("0" if ID[-1] != "0" else "1")), ("moved_in_on", "1989-01-01"),
     ("birth_date", "1990-03-16"), ("hukou张伟", "x")],
)
def test_log_text_names_the_field_and_rule_never_the_value(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_person(base(**{field: value}), today=TODAY)
    err = info.value
    assert str(value) not in err.log_text and "张" not in err.log_text
    assert ID not in err.log_text and "1990" not in err.log_text and ID[6:14] not in err.log_text
    assert err.log_text.endswith(err.rule)


def test_an_update_is_judged_only_on_the_fields_it_writes() -> None:
    from core.person import check_update

    legacy = {**base(), "name": "张\x1b[2J伟", "contraception": "\u202e", "children": {"nested": [[1]]}}
    # Each written field by its own rule; the legacy values it leaves alone are not judged again.
    update = validate_person({"residence_city": "深圳市"}, today=TODAY, partial=True)
    check_update(legacy, update, today=TODAY)
    # The cross-field rules a written field takes part in still hold, against the merged record.
    with pytest.raises(ValidationError, match="^birth_date: 1990-03-16 does not match"):
        check_update(legacy, validate_person({"birth_date": "1990-03-16"}, today=TODAY, partial=True), today=TODAY)
    with pytest.raises(ValidationError, match="^sex: F does not match"):
        check_update(legacy, {"sex": "F"}, today=TODAY)
    with pytest.raises(ValidationError, match="^moved_in_on: 1989-01-01 is before birth_date"):
        check_update(legacy, {"moved_in_on": "1989-01-01"}, today=TODAY)
    # A rule between two fields the update leaves alone is not judged (a legacy mismatch stays editable).
    check_update({**legacy, "sex": "F"}, {"residence_city": "深圳市"}, today=TODAY)
    # A legacy id_number of a shape no rule accepts does not crash the cross-field rules.
    check_update({**legacy, "id_number": "x"}, {"birth_date": "1990-03-16"}, today=TODAY)


# -- rules that only merging breaks (issue 11: conflicts, never refusals) ----------------------------


def _merged_moves() -> tuple[RecordState, RecordState, RecordState]:
    """A record; 44 corrects its id_number and birth_date (later birth, consistent); 45, which has not
    seen that yet, sets moved_in_on after the old birth date but before the new one. Each write keeps
    every rule on the record its writer held; merged, moved_in_on is before birth_date."""
    from core.apply import local_write
    from core.hlc import Timestamp
    from core.idnumber import make_id_number
    from core.samples import sample_person

    today = date.today()
    v = validate_person(sample_person(random.Random(7), household="44", residence="45", today=today), today=today)
    v = validate_person({**v, "birth_date": "2001-06-19", "sex": "M", "moved_in_on": None,
                         "id_number": make_id_number(str(v["id_number"])[:6], date(2001, 6, 19), 1)}, today=today)
    rid = "00000000-0000-4000-8000-000000000001"

    def write(prior, values, node, seq, wall):  # type: ignore[no-untyped-def]
        if prior is not None:
            check_update(prior.values(), values, today=today)
        return local_write(prior, kind="person", record_id=rid, values=values, node=node, seq=seq,
                           at=Timestamp(wall, 0, node), op="update" if prior else "create", operator=None).state

    base = write(None, v, "province-44", 1, 1000)
    a = write(base, {"birth_date": "2005-03-04", "id_number": make_id_number(str(v["id_number"])[:6], date(2005, 3, 4), 1)},
              "province-44", 2, 2000)
    b = write(base, {"moved_in_on": "2003-01-01"}, "province-45", 1, 3000)
    return base, a, b


def test_a_rule_broken_only_by_merging_concurrent_writes_is_a_conflict_on_both_fields() -> None:
    base, a, b = _merged_moves()
    assert merge_conflicts(a) == {} and merge_conflicts(b) == {}
    for merged in (a.merge(b), b.merge(a)):  # either arrival order: the same conflict
        assert merged.conflicts() == {}  # no field was written twice
        rule = "moved_in_on must not be before birth_date; the two were written concurrently"
        assert merge_conflicts(merged) == {"moved_in_on": rule, "birth_date": rule}
        assert open_conflicts(merged) == ["birth_date", "moved_in_on"]
    # Settled by writing one of the two so that the rule holds: no conflict left.
    from core.apply import local_write
    from core.hlc import Timestamp

    fixed = local_write(a.merge(b), kind="person", record_id=a.record_id, values={"moved_in_on": "2006-01-01"},
                        node="province-45", seq=2, at=Timestamp(4000, 0, "province-45"), op="settle",
                        operator=None).state
    assert merge_conflicts(fixed) == {} and open_conflicts(fixed) == []


def test_a_rule_broken_by_writes_one_after_the_other_is_no_conflict() -> None:
    """A record stored before a rule (or by an older release) is not flagged: its writes were ordered."""
    from core.apply import local_write
    from core.hlc import Timestamp

    _base, a, _b = _merged_moves()
    later = local_write(a, kind="person", record_id=a.record_id, values={"moved_in_on": "2003-01-01"},
                        node="province-45", seq=1, at=Timestamp(5000, 0, "province-45"), op="update",
                        operator=None).state  # (bypassing check_update, as a legacy write would have)
    assert merge_conflicts(later) == {} and open_conflicts(later) == []
