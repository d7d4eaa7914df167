"""runtime.deltaintake: what a v2 delta must pass before the store decides on it.

Real keys (tests/support/pki.py): a delta is signed by its author's Merkle batch seal exactly as
a change is. Each refusal names the key or the field and is charged to whoever signed it, or to
the TLS peer when nothing verifies; a bad delta never stops the rest of its batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from core.change import Envelope
from core.delta import Delta
from core.hlc import Timestamp
from core.merkle import Seal
from runtime.deltaintake import check_deltas
from tests.support.pki import PKI, build_pki

TODAY = dt.date(2026, 1, 15)
T0 = 1_768_435_200_000


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(Path(tmp_path_factory.mktemp("pki")))


def delta(origin: str = "province-11", **values: object) -> Delta:
    base = {"name": "张三", "household_province": "11", "residence_province": "44", "_deleted": False}
    return Delta("person", "k1", origin, 0, 1, Timestamp(T0, 0, origin), "create", None, (), (),
                 {**base, **values}, frozenset({"11", "44"}), {})


def sealed(pki: PKI, signer: str, *deltas: Delta) -> list[Envelope]:
    bodies = [d.to_body() for d in deltas]
    return [Envelope(b, s, d.openings()) for b, s, d in zip(bodies, pki.sealer(signer)(bodies), deltas)]


def check(pki: PKI, envs: list[Envelope], **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("peer", "hub-pearl")
    kw.setdefault("peer_may_forward", True)
    return check_deltas(envs, pki.verifier(), today=TODAY, **kw)


def test_a_signed_delta_passes_with_its_id_and_signer(pki: PKI) -> None:
    (env,) = sealed(pki, "province-11", delta())
    accepted, refused = check(pki, [env])
    assert refused == []
    (got,) = accepted
    assert got.id == hashlib.sha256(env.body).hexdigest() and got.signer == "province-11"
    assert got.delta == delta()


def test_signed_by_another_province_than_it_names_is_refused_and_charged_to_the_signer(pki: PKI) -> None:
    (env,) = sealed(pki, "province-44", delta("province-11"))
    accepted, (r,) = check(pki, [env])
    assert accepted == [] and r.charged == "province-44"
    assert r.reason.startswith("unauthorised writer: origin claims province-11 but the delta is signed by province-44")


def test_a_node_may_push_only_its_own(pki: PKI) -> None:
    (env,) = sealed(pki, "province-11", delta())
    accepted, (r,) = check(pki, [env], peer="province-44", peer_may_forward=False)
    assert accepted == [] and r.charged == "province-44" and "may only push deltas it authored" in r.reason


def test_a_value_against_the_schema_is_refused_naming_the_field(pki: PKI) -> None:
    envs = sealed(pki, "province-11", delta(children=-1), delta(birth_date="2999-01-01"), delta())
    accepted, refused = check(pki, envs)
    assert [r.reason.split(":")[1].strip() for r in refused] == ["set.children", "set.birth_date"]
    assert all(r.charged == "province-11" for r in refused)
    assert len(accepted) == 1  # the good one in the same batch still passes


def test_not_routed_to_this_province_is_refused(pki: PKI) -> None:
    (env,) = sealed(pki, "province-11", delta())
    accepted, (r,) = check(pki, [env], for_province="65")
    assert accepted == [] and "not routed to province 65" in r.reason


def test_a_lone_surrogate_is_refused_not_stored(pki: PKI) -> None:
    (env,) = sealed(pki, "province-11", delta())
    salt = delta().salts["name"]
    openings = env.openings.replace(f'"name":["{salt}","张三"]'.encode(), f'"name":["{salt}","\\ud800"]'.encode())
    assert openings != env.openings
    accepted, (r,) = check(pki, [Envelope(env.body, env.seal, openings)])
    assert accepted == [] and "surrogate" in r.reason and r.charged == "hub-pearl"


def test_a_value_that_does_not_match_its_commitment_is_refused_and_charged_to_the_peer(pki: PKI) -> None:
    (env,) = sealed(pki, "province-11", delta())
    swapped = Envelope(env.body, env.seal, env.openings.replace("张三".encode(), "李四".encode()))
    accepted, (r,) = check(pki, [swapped])
    assert accepted == [] and r.reason == "malformed: openings.name: does not match its commitment"
    assert r.charged == "hub-pearl"  # whoever handed us the values: the signer committed to others
    accepted, (r,) = check(pki, [Envelope(env.body, env.seal)])  # values left out
    assert accepted == [] and "missing" in r.reason


def test_a_tampered_body_fails_the_signature_and_is_charged_to_the_peer(pki: PKI) -> None:
    (env,) = sealed(pki, "province-11", delta())
    tampered = Envelope(env.body.replace(b'"seq":1', b'"seq":2'), env.seal, env.openings)
    accepted, (r,) = check(pki, [tampered])
    assert accepted == [] and r.reason.startswith("bad signature") and r.charged == "hub-pearl"


def test_malformed_envelopes_name_the_key(pki: PKI) -> None:
    body = delta().to_body().replace(b'"v":2', b'"v":1')
    accepted, (r,) = check(pki, [Envelope(body, Seal("", b"", 0, 1, ()))])
    assert accepted == [] and r.reason.startswith("malformed: v: protocol version 1 is not 2")
