"""Claims (core.claims, store.claims), on SQLite and PostgreSQL: a create of a held person by a
province the record does not involve is held apart, not merged; accepting it merges it by one
signed change that then routes to the claimer; refusing keeps it for audit only. Registrations
by involved provinces merge as usual."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import LocalError
from core.personkey import person_key
from store import claims
from tests.contract.test_store import T0, Authors, accept_all, open_store
from tests.support.pki import PKI

SECRET = bytes(range(32))
KIND = "person"


def _ingest(pki: PKI, store, envs) -> object:  # type: ignore[no-untyped-def]
    return store.ingest(accept_all(pki, envs), [], via="hub-pearl", now_ms=T0 + 10_000_000)


def test_a_create_by_an_uninvolved_province_is_held_as_a_claim_until_accepted(
        db_url: str, pki: PKI, authors: Authors, opened: list, tmp_path: Path) -> None:
    at44 = open_store(db_url, opened, owner="province-44")
    national = open_store(f"sqlite:///{tmp_path / 'national.db'}", opened, owner="hub-national")
    values = authors.person("44", "45")
    key = person_key(SECRET, str(values["id_number"]))
    own, own_env = authors.write("province-44", "44", "45", values=values, record_id=key, store=at44)
    # 45 (residence: involved) registers the same person with another spelling: a plain merge.
    _, env45 = authors.write("province-45", "44", "45", values={**values, "name": "张叁"}, record_id=key)
    # 11 (neither household nor residence here) registers the person as living in 11: a claim.
    claim11, env11 = authors.write("province-11", "44", "11", values={**values, "residence_province": "11"},
                                   record_id=key)
    later11, env11b = authors.write("province-11", "44", "11", values={"residence_city": "乌鲁木齐市"}, record_id=key)
    assert later11.delta.deps == (claim11.id,)  # written on the claimer's own create
    result = _ingest(pki, at44, [env45, env11, env11b])
    assert result.claims == 1  # the create is the claim; the claimer's later delta is held with it, uncounted
    view = at44.record_graph(KIND, key).view()
    assert view.claims == {claim11.id} and not {claim11.id, later11.id} & view.counted
    state = at44.get(KIND, key)
    assert set(state.conflicts()) == {"name"}  # 45's registration merged
    assert all(v.value != "11" for v in state.fields["residence_province"])  # 11's did not
    assert state.values().get("residence_city") != "乌鲁木齐市"
    listed = at44.list_claims(status=claims.OPEN)
    assert [(c.record_id, c.origin, c.op) for c in listed] == [(key, "province-11", "create")]

    # The national hub holds the record, so it holds the claim apart too.
    _ingest(pki, national, [own_env, env45, env11, env11b])
    assert [c.origin for c in national.list_claims(status=claims.OPEN)] == ["province-11"]

    accepted = at44.accept_claim(listed[0].claim_id, operator="operator-44-admin", now_ms=T0 + 20_000_000,
                                 seal=pki.sealer("province-44"))
    assert "11" in accepted.routes and accepted.origin == "province-44"  # from now on it reaches 11
    merged = at44.get(KIND, key)
    assert {v.value for v in merged.fields["residence_province"]} == {"45", "11"}
    assert merged.values()["residence_city"] == "乌鲁木齐市"
    assert at44.list_claims(status=claims.OPEN) == []
    assert {c.status for c in at44.list_claims()} == {claims.ACCEPTED}
    with pytest.raises(LocalError, match="already accepted"):
        at44.accept_claim(listed[0].claim_id, operator=None, now_ms=T0 + 20_000_001, seal=pki.sealer("province-44"))

    # The acceptance arrives at the national hub: its held claim merges there, and both agree.
    (entry,) = [e for e in at44.history(KIND, key) if e.seq == accepted.seq and e.origin == "province-44"]
    _ingest(pki, national, [entry.envelope])
    assert national.get(KIND, key).to_bytes() == merged.to_bytes()
    assert {c.status for c in national.list_claims()} == {claims.MERGED}


def test_a_refused_claim_is_kept_for_audit_and_never_merged(db_url: str, pki: PKI, authors: Authors,
                                                           opened: list) -> None:
    at44 = open_store(db_url, opened, owner="province-44")
    values = authors.person("44", "44")
    key = person_key(SECRET, str(values["id_number"]))
    authors.write("province-44", "44", "44", values=values, record_id=key, store=at44)
    before = at44.get(KIND, key).to_bytes()
    _, env31 = authors.write("province-31", "44", "31", values={**values, "residence_province": "31"},
                             record_id=key)
    assert _ingest(pki, at44, [env31]).claims == 1
    (claim,) = at44.list_claims(status=claims.OPEN)
    refused = at44.refuse_claim(claim.claim_id, operator="operator-44-admin", now_ms=T0 + 30_000_000)
    assert refused.status == claims.REFUSED and refused.decided_by == "operator-44-admin"
    assert at44.get(KIND, key).to_bytes() == before
    with pytest.raises(LocalError, match="already refused"):
        at44.accept_claim(claim.claim_id, operator=None, now_ms=T0 + 30_000_001, seal=pki.sealer("province-44"))
    # A resend of the refused create changes nothing (the same delta id: a duplicate).
    assert _ingest(pki, at44, [env31]).duplicates == 1
    assert at44.get(KIND, key).to_bytes() == before and len(at44.list_claims()) == 1


def test_a_create_of_a_record_not_held_here_is_no_claim(db_url: str, pki: PKI, authors: Authors,
                                                        opened: list) -> None:
    at44 = open_store(db_url, opened, owner="province-44")
    values = authors.person("44", "11")
    key = person_key(SECRET, str(values["id_number"]))
    _, env = authors.write("province-11", "44", "11", values=values, record_id=key)
    assert _ingest(pki, at44, [env]).claims == 0
    assert at44.get(KIND, key) is not None and at44.list_claims() == []
