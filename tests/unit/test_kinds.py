"""The certificate and service kinds: validators, routing and projections, through core.kinds."""

from __future__ import annotations

from datetime import date

import pytest

from core.errors import ValidationError
from core.hlc import Timestamp
from core.kinds import KINDS, get_kind
from core.change import Change, parse, parse_head
from core.record import empty

TODAY = date(2026, 1, 15)
PERSON = "3b0c3b55-6a0e-4c44-9a4b-6f1b2f0c1a11"
SERVICE = {"person_id": PERSON, "type": "pregnancy_check", "on": "2026-01-10", "result": " 正常 ",
           "provider_province": "44", "household_province": "65", "residence_province": 44}
CERT = {"person_id": PERSON, "household_province": "65", "residence_province": "44", "issued_on": "2026-01-02",
        "expires_on": "2029-01-02", "status": "issued", "digest": "ab" * 32}


def test_every_kind_is_registered_with_its_routing_fields() -> None:
    assert set(KINDS) >= {"person", "certificate", "service"}
    for kind in KINDS.values():
        assert set(kind.routing_fields) <= set(kind.fields), kind.name
    assert get_kind("person").project is None
    with pytest.raises(ValidationError, match="kind: unknown record kind 'nope'"):
        get_kind("nope")


def test_service_validates_and_normalises() -> None:
    v = get_kind("service").validate
    assert v(SERVICE, today=TODAY) == {**SERVICE, "result": "正常", "residence_province": "44"}
    assert list(v(SERVICE, today=TODAY)) == list(get_kind("service").fields)
    cases = [
        ({"type": "massage"}, "type", "must be one of pregnancy_check"),
        ({"on": "2026-01-16"}, "on", "in the future"),
        ({"on": "2026-02-30"}, "on", "not a valid date"),
        ({"on": "20260101"}, "on", "YYYY-MM-DD"),
        ({"provider_province": "99"}, "provider_province", ""),
        ({"person_id": "bob"}, "person_id", "not a record id"),
        ({"result": "x" * 257}, "result", "at most 256"),
        ({"result": "a\x07b"}, "result", "control characters"),
        ({"colour": "red"}, "colour", "unknown field"),
    ]
    for change, field, why in cases:
        with pytest.raises(ValidationError) as err:
            v({**SERVICE, **change}, today=TODAY)
        assert err.value.field == field and why in err.value.reason, (change, str(err.value))
    for required in ("person_id", "type", "on", "provider_province", "household_province"):
        with pytest.raises(ValidationError, match=f"{required}: required field is missing"):
            v({k: x for k, x in SERVICE.items() if k != required}, today=TODAY)
    assert v({"result": None}, today=TODAY, partial=True) == {"result": None}
    with pytest.raises(ValidationError, match="type: required field cannot be empty"):
        v({"type": None}, today=TODAY, partial=True)


def test_certificate_validates_its_dates_and_status() -> None:
    v = get_kind("certificate").validate
    assert v(CERT, today=TODAY) == CERT
    cases = [
        ({"expires_on": "2026-01-02"}, "expires_on", "is not after issued_on"),
        ({"issued_on": "2026-02-01"}, "issued_on", "in the future"),
        ({"status": "lost"}, "status", "must be one of issued, superseded, revoked"),
        ({"status_on": "2026-01-01"}, "status_on", "before issued_on"),
        ({"digest": "AB" * 32}, "digest", "hex"),
    ]
    for change, field, why in cases:
        with pytest.raises(ValidationError) as err:
            v({**CERT, **change}, today=TODAY)
        assert err.value.field == field and why in err.value.reason, (change, str(err.value))


def test_new_kinds_route_by_their_copied_household_and_residence() -> None:
    state = empty("service", "5d6f2a4e-0000-4000-8000-000000000001").write(
        get_kind("service").validate(SERVICE, today=TODAY), node="province-44", at=Timestamp(1, 0, "province-44"))
    ch = Change("service", state.record_id, "province-44", 1, Timestamp(1, 0, "province-44"), "create", None,
                frozenset(), state)
    assert ch.routes == {"44", "65"}  # provider 44 is the residence; never a third province
    body = ch.to_body()
    assert parse(body) == ch
    assert parse_head(body).routes == {"44", "65"}


def test_projections_are_pure_functions_of_shown_values() -> None:
    assert get_kind("service").project(SERVICE) == {  # type: ignore[misc]
        "person_id": PERSON, "type": "pregnancy_check", "given_on": "2026-01-10", "provider": "44",
        "household": "65", "residence": 44}  # fitted to the column (or NULL) by the store, not here
    assert get_kind("certificate").project(CERT) == {  # type: ignore[misc]
        "person_id": PERSON, "issuer": "65", "issued_on": "2026-01-02", "expires_on": "2029-01-02",
        "status": "issued", "status_on": "2026-01-02"}
