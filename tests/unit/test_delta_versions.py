"""Mixed versions within v2 (core.delta.parse, runtime.deltaintake): a newer release's delta.

A newer release may raise the delta protocol version, add top-level keys to the signed body and
add record fields. This release reads such a delta, keeps the keys it does not know in the signed
bytes (which travel as signed: the delta's identity is their hash), and keeps a record field its
schema does not know only when the delta declares the newer protocol. Everything else stays as
strict as for a v2 delta: an unknown key or field in a v2 delta is refused, naming it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest

from core import canonical
from core.change import Envelope
from core.delta import PROTOCOL, Delta, delta_id, parse
from core.errors import Malformed
from core.hlc import Timestamp
from runtime.deltaintake import check_deltas
from tests.support.pki import PKI, build_pki

TODAY = dt.date(2026, 1, 15)
T0 = 1_768_435_200_000
NEW_FIELD = "health_card_no"


def delta(version: int = PROTOCOL, **values: object) -> Delta:
    base = {"name": "张三", "household_province": "44", "residence_province": "44", "_deleted": False}
    return Delta("person", "k1", "province-44", 0, 1, Timestamp(T0, 0, "province-44"), "create", None, (), (),
                 {**base, **values}, frozenset({"44"}), {}, version=version)


def newer_body(d: Delta, **extra: object) -> bytes:
    """``d``'s body as a newer release signs it: its own keys plus ``extra``."""
    obj = json.loads(d.to_body())
    obj.update(extra)
    return canonical.dumps(obj)


FEATURE = {"consent": {"scope": ["health"], "given_on": "2025-01-01"}, "level": 3}


def test_a_newer_delta_with_unknown_keys_parses_and_its_bytes_are_its_identity() -> None:
    d = delta(3)
    body = newer_body(d, x_new_feature=FEATURE)
    got = parse(body, d.openings())
    assert got == d and got.version == 3 and got.newer
    # This release cannot rebuild the bytes (it drops the key it does not know): they must travel as
    # signed, and the delta is known by their hash.
    assert got.to_body() != body and delta_id(body) != delta_id(got.to_body())
    assert b'"x_new_feature"' in body


@pytest.mark.parametrize("version", [3, 4, 2**63 - 1])
def test_any_later_integer_version_is_read(version: int) -> None:
    d = delta(version)
    assert parse(newer_body(d), d.openings()).version == version


@pytest.mark.parametrize("v", [1, 0, -3, True, "3", None, [3], {"major": 3}, 2**63])
def test_a_version_that_is_not_2_or_a_later_integer_is_refused(v: object) -> None:
    d = delta()
    obj = json.loads(d.to_body())
    obj["v"] = v
    with pytest.raises(Malformed, match=r"^v: protocol version .* is not 2 or a later integer"):
        parse(json.dumps(obj).encode(), d.openings())
    del obj["v"]
    with pytest.raises(Malformed, match=r"^v: protocol version None"):
        parse(json.dumps(obj).encode(), d.openings())


def test_an_unknown_key_in_a_v2_delta_is_refused_naming_it() -> None:
    d = delta()
    with pytest.raises(Malformed, match=r"^x_new_feature: not a field of a v2 delta$"):
        parse(newer_body(d, x_new_feature=FEATURE), d.openings())


@pytest.mark.parametrize("edit, message", [
    (lambda o: o.update(op="merge"), "op:"),
    (lambda o: o.pop("kind"), "kind:"),
    (lambda o: o.update(routes=["99"]), "routes:"),
    (lambda o: o.update(seq=0), "seq:"),
    (lambda o: o.update(deps=["zz"]), "deps:"),
    (lambda o: o.update(origin="hub-pearl"), "origin:"),
    (lambda o: o.update(set={}), r"openings\.\w+: opens a field the delta does not write"),
])
def test_a_newer_delta_is_checked_as_strictly_otherwise(edit, message) -> None:  # type: ignore[no-untyped-def]
    d = delta(3)
    obj = json.loads(newer_body(d, x_new_feature=FEATURE))
    edit(obj)
    with pytest.raises(Malformed, match=message):
        parse(canonical.dumps(obj), d.openings())
    # ... and its openings must still match their commitments.
    swapped = d.openings().replace("张三".encode(), "李四".encode())
    with pytest.raises(Malformed, match="^openings.name: does not match its commitment$"):
        parse(newer_body(d, x_new_feature=FEATURE), swapped)


# -- runtime.deltaintake: values -------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(Path(tmp_path_factory.mktemp("pki")))


def sealed(pki: PKI, d: Delta, body: bytes) -> Envelope:
    (seal,) = pki.sealer("province-44")([body])
    return Envelope(body, seal, d.openings())


def test_a_field_unknown_to_the_schema_is_kept_only_under_a_newer_protocol(pki: PKI) -> None:
    newer = delta(3, **{NEW_FIELD: "HC-4401-0099-7"})
    current = delta(PROTOCOL, **{NEW_FIELD: "HC-4401-0099-7"})
    envs = [sealed(pki, newer, newer_body(newer, x_new_feature=FEATURE)), sealed(pki, current, current.to_body())]
    accepted, refused = check_deltas(envs, pki.verifier(), peer="province-44", peer_may_forward=False, today=TODAY)
    (got,) = accepted
    assert got.delta.values[NEW_FIELD] == "HC-4401-0099-7" and got.envelope.body == envs[0].body
    assert got.id == delta_id(envs[0].body)  # the exact signed bytes, the unknown key included
    (r,) = refused
    assert r.reason == f"malformed: set.{NEW_FIELD}: unknown field" and r.charged == "province-44"


def test_a_newer_delta_still_has_its_known_fields_checked(pki: PKI) -> None:
    bad = delta(3, children=-1, **{NEW_FIELD: "x"})
    accepted, (r,) = check_deltas([sealed(pki, bad, newer_body(bad))], pki.verifier(), peer="province-44",
                                  peer_may_forward=False, today=TODAY)
    assert accepted == [] and r.reason.startswith("malformed: set.children:")
    assert replace(bad, version=PROTOCOL).newer is False
