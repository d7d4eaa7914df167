"""Identity names: one spelling per identity, strict parsing."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from core.identity import HUBS, PROVINCE_CODES, Identity, IdentityError


def test_there_are_32_province_codes_including_xpcc() -> None:
    assert len(PROVINCE_CODES) == 32
    assert {"11", "44", "65", "66"} <= PROVINCE_CODES
    assert not {"10", "16", "20", "24", "38", "47", "55", "60", "67"} & PROVINCE_CODES


@pytest.mark.parametrize("code", sorted(PROVINCE_CODES))
def test_every_province_round_trips(code: str) -> None:
    ident = Identity.parse(f"province-{code}")
    assert ident == Identity("province", code, None)
    assert str(ident) == f"province-{code}"
    assert ident.province == code
    assert ident.hub is None


@pytest.mark.parametrize("hub", HUBS)
def test_every_hub_round_trips(hub: str) -> None:
    ident = Identity.parse(f"hub-{hub}")
    assert ident == Identity.for_hub(hub)
    assert str(ident) == f"hub-{hub}"
    assert ident.province is None
    assert ident.hub == hub


@pytest.mark.parametrize(
    ("text", "scope", "label", "province"),
    [
        ("operator-44-admin", "44", "admin", "44"),
        ("operator-pearl-admin", "pearl", "admin", None),
        ("operator-national-admin", "national", "admin", None),
        ("operator-66-night-shift-2", "66", "night-shift-2", "66"),
    ],
)
def test_operators(text: str, scope: str, label: str, province: str | None) -> None:
    ident = Identity.parse(text)
    assert ident.role == "operator"
    assert ident.scope == scope
    assert ident.name == label
    assert ident.province == province
    assert str(ident) == text
    assert ident == Identity.for_operator(scope, label)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "province",
        "province-",
        "province-4",
        "province-044",
        "province-67",
        "province-10",
        "province-٤٤",  # Arabic-Indic digits are not ASCII codes
        "Province-44",
        " province-44",
        "province-44 ",
        "hub-shanghai",
        "hub-Pearl",
        "hub-",
        "operator-44",
        "operator-44-",
        "operator-99-admin",
        "operator-shanghai-admin",
        "operator-44-Admin",
        "operator-44--admin",
        "operator-44-admin-",
        "operator-44-" + "a" * 33,
        "operator-44-ad min",
        "node-44",
    ],
)
def test_bad_identities_are_rejected(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        Identity.parse(text)
    assert info.value.field == "identity"
    # Also a ValueError, so generic parsing code can catch it.
    assert isinstance(info.value, ValueError)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(IdentityError):
        Identity("province", "99")
    with pytest.raises(IdentityError):
        Identity("province", "44", "44")
    with pytest.raises(IdentityError):
        Identity("operator", "admin", None)
    with pytest.raises(IdentityError):
        Identity("root", "x")  # type: ignore[arg-type]


def test_uri_round_trip() -> None:
    ident = Identity.parse("operator-44-admin")
    assert ident.uri == "yipanqi:operator-44-admin"
    assert Identity.parse_uri(ident.uri) == ident
    with pytest.raises(IdentityError):
        Identity.parse_uri("spiffe:province-44")


def test_identity_is_frozen_and_hashable() -> None:
    ident = Identity.parse("province-44")
    with pytest.raises(AttributeError):
        ident.name = "45"  # type: ignore[misc]
    assert {ident, Identity.for_province("44")} == {ident}


def test_constructors_spell_the_wire_names_and_refuse_unknown_ones() -> None:
    # Code builds identities with these, not f"province-{code}": the wire spelling stays the same.
    assert str(Identity.for_province("44")) == "province-44" == str(Identity.parse("province-44"))
    assert str(Identity.for_hub("national")) == "hub-national"
    assert Identity.for_hub("pearl") is Identity.for_hub("pearl")  # cached, like parse
    with pytest.raises(IdentityError):
        Identity.for_province("99")
    with pytest.raises(IdentityError):
        Identity.for_hub("atlantis")
