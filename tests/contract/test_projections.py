"""Per-kind side tables (store.projections), on SQLite and PostgreSQL through ``db_url``.

The certificates and services tables follow the record rows exactly: written in the
same transaction as the record on a local write and on ingest of a peer's changes,
replaced on update, removed on delete, rolled back with the record when anything in
the transaction fails, and fitted to their columns whatever a peer sends.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Callable

import pytest
import sqlalchemy as sa

from core.certificate import validate_certificate
from core.change import Envelope
from core.delta import Delta
from core.errors import LocalError
from core.hlc import Timestamp
from core.service import validate_service
from runtime.intake import check
from store.schema import certificates, services
from store.store import Store
from tests.contract.test_store import Boom, failing_writes, snapshot
from tests.support.pki import PKI

TODAY = date(2026, 1, 15)
T0 = 1_768_435_200_000
PERSON = "3b0c3b55-6a0e-4c44-9a4b-6f1b2f0c1a11"



def _open(url: str, opened: list[Store], owner: str) -> Store:
    s = Store.open(url, owner=owner)
    opened.append(s)
    return s


def _set(values: dict[str, object], op: str = "create") -> Callable[[object], tuple[str, dict[str, object]]]:
    return lambda current: (op if current is None or op == "delete" else "update", values)


def _service(**kw: object) -> dict[str, object]:
    base = {"person_id": PERSON, "type": "pregnancy_check", "on": "2026-01-10", "result": "正常",
            "provider_province": "44", "household_province": "65", "residence_province": "44"}
    return validate_service({**base, **kw}, today=TODAY)


def _certificate(**kw: object) -> dict[str, object]:
    base = {"person_id": PERSON, "household_province": "65", "residence_province": "44",
            "issued_on": "2026-01-02", "expires_on": "2029-01-02", "status": "issued", "digest": "ab" * 32}
    return validate_certificate({**base, **kw}, today=TODAY)


def _rows(s: Store, table: sa.Table) -> list[tuple]:
    with s.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


def test_local_writes_keep_the_side_tables_in_their_transaction(db_url: str, pki: PKI, opened: list[Store]) -> None:
    s = _open(db_url, opened, "province-44")
    seal = pki.sealer("province-44")
    sid, cid = str(uuid.uuid4()), str(uuid.uuid4())
    s.write_local("service", sid, _set(_service()), operator=None, now_ms=T0, seal=seal)
    s.write_local("certificate", cid, _set(_certificate()), operator=None, now_ms=T0 + 1, seal=seal)
    assert _rows(s, services) == [(sid, PERSON, "pregnancy_check", "2026-01-10", "44", "65", "44")]
    assert _rows(s, certificates) == [(cid, PERSON, "65", "2026-01-02", "2029-01-02", "issued", "2026-01-02")]
    assert s.projected("service", {"person_id": PERSON}) == [
        {"service_id": sid, "person_id": PERSON, "type": "pregnancy_check", "given_on": "2026-01-10",
         "provider": "44", "household": "65", "residence": "44"}]

    # An update replaces the row; the person table is untouched by any of it.
    s.write_local("certificate", cid, _set({"status": "revoked", "status_on": "2026-01-12"}), operator=None,
                  now_ms=T0 + 2, seal=seal)
    assert _rows(s, certificates) == [(cid, PERSON, "65", "2026-01-02", "2029-01-02", "revoked", "2026-01-12")]

    # Oldest first by given_on, then id; a second person's services are not listed.
    later, other = str(uuid.uuid4()), str(uuid.uuid4())
    earlier = str(uuid.uuid4())
    s.write_local_batch([("service", later, _set(_service(on="2026-01-14", type="birth"))),
                         ("service", earlier, _set(_service(on="2025-12-01"))),
                         ("service", other, _set(_service(person_id=str(uuid.uuid4()))))],
                        operator=None, now_ms=T0 + 3, seal=seal)
    got = [r["service_id"] for r in s.projected("service", {"person_id": PERSON}, ["given_on"])]
    assert got == [earlier, sid, later]

    # A failure anywhere in the transaction (the side table, the record, the log) leaves nothing.
    before = snapshot(s), _rows(s, services)
    for table, after in (("services", 0), ("records", 0), ("log", 0)):
        with failing_writes(s, table, after=after) as attempts, pytest.raises(Boom):
            s.write_local("service", str(uuid.uuid4()), _set(_service()), operator=None, now_ms=T0 + 4, seal=seal)
        assert attempts == [table]
    assert (snapshot(s), _rows(s, services)) == before

    # A delete (tombstone) removes the row; the record stays, deleted.
    s.write_local("service", sid, _set({}, "delete"), operator=None, now_ms=T0 + 5, seal=seal)
    assert sid not in [r[0] for r in _rows(s, services)]
    assert s.get("service", sid).deleted  # type: ignore[union-attr]


def test_ingested_changes_keep_the_side_tables_and_peer_values_are_fitted(
        db_url: str, pki: PKI, opened: list[Store], tmp_path: Path) -> None:
    author = _open(f"sqlite:///{tmp_path / 'author.db'}", opened, "province-44")
    seal = pki.sealer("province-44")
    good, odd, gone, cert = (str(uuid.uuid4()) for _ in range(4))
    author.write_local("service", good, _set(_service()), operator=None, now_ms=T0, seal=seal)
    # What a hostile or newer peer could sign: values this release's validator would refuse. The
    # store never fails the batch over them; the columns get NULL, the state keeps them.
    author.write_local("service", odd, _set({**_service(), "type": "x" * 40, "on": "2026-01-10\x00",
                                             "provider_province": 44}), operator=None, now_ms=T0 + 1, seal=seal)
    author.write_local("service", gone, _set(_service(type="birth")), operator=None, now_ms=T0 + 2, seal=seal)
    author.write_local("service", gone, _set({}, "delete"), operator=None, now_ms=T0 + 3, seal=seal)
    author.write_local("certificate", cert, _set(_certificate()), operator=None, now_ms=T0 + 4, seal=seal)
    author.write_local("certificate", cert, _set({"status": "superseded", "status_on": "2026-01-14"}),
                       operator=None, now_ms=T0 + 5, seal=seal)
    envs = [e.envelope for e in author.outbox(0)]
    assert len(envs) == 6
    accepted, refused = check(envs, pki.verifier(), peer="hub-national", peer_may_forward=True, for_province="65")
    assert refused == []

    s = _open(db_url, opened, "province-65")
    # Applied one change at a time and all at once, the tables end up the same.
    for a in accepted[:3]:
        s.ingest([a], [], via="hub-national", now_ms=T0 + 10)
    assert {r[0] for r in _rows(s, services)} == {good, odd, gone}
    s.ingest(accepted, [], via="hub-national", now_ms=T0 + 11)
    assert _rows(s, services) == sorted([(good, PERSON, "pregnancy_check", "2026-01-10", "44", "65", "44"),
                                         (odd, PERSON, None, None, None, "65", "44")])
    assert s.get("service", odd).values()["type"] == "x" * 40  # type: ignore[union-attr]
    assert _rows(s, certificates) == [(cert, PERSON, "65", "2026-01-02", "2029-01-02", "superseded", "2026-01-14")]
    assert _rows(s, services) == _rows(author, services)
    assert _rows(s, certificates) == _rows(author, certificates)

    # Redelivery changes nothing.
    before = snapshot(s), _rows(s, services), _rows(s, certificates)
    res = s.ingest(list(reversed(accepted)), [], via="hub-national", now_ms=T0 + 12)
    assert res.duplicates == 6
    assert (snapshot(s), _rows(s, services), _rows(s, certificates)) == before

    # A failing side-table write rolls the whole batch back, cursor included.
    later = str(uuid.uuid4())
    author.write_local("service", later, _set(_service(on="2026-01-15")), operator=None, now_ms=T0 + 20, seal=seal)
    (entry,) = author.outbox(6)
    (a,), _ = check([entry.envelope], pki.verifier(), peer="hub-national", peer_may_forward=True)
    with failing_writes(s, "services") as attempts, pytest.raises(Boom):
        s.ingest([a], [], via="hub-national", now_ms=T0 + 21, cursor=("pull:hub-national", 99))
    assert attempts == ["services"]
    assert (snapshot(s), _rows(s, services), _rows(s, certificates)) == before
    assert s.cursor("pull:hub-national") == 0
    s.ingest([a], [], via="hub-national", now_ms=T0 + 22)
    assert later in [r[0] for r in _rows(s, services)]


def test_a_province_not_involved_cannot_write_a_service(db_url: str, pki: PKI, opened: list[Store],
                                                        tmp_path: Path) -> None:
    # Province 11 (a compromised node) signs, with its own real key, a service of a person of 65
    # living in 44. Its honest node would not write it; signed by hand, intake passes it (the seal
    # and the values are fine), and every receiver's graph refuses it (the generic rule: a create
    # must involve its author), quarantines it charged to 11, and the side table never sees it.
    rogue = _open(f"sqlite:///{tmp_path / 'rogue.db'}", opened, "province-11")
    sid = str(uuid.uuid4())
    values = _service(provider_province="11")
    with pytest.raises(LocalError, match="must involve its author"):
        rogue.write_local("service", sid, _set(values), operator=None, now_ms=T0, seal=pki.sealer("province-11"))
    assert rogue.last_seq() == 0
    forged = Delta("service", sid, "province-11", 0, 1, Timestamp(T0, 0, "province-11"), "create", None, (), (),
                   {**values, "_deleted": False}, frozenset({"44", "65"}), {})
    body = forged.to_body()
    (seal,) = pki.sealer("province-11")([body])
    accepted, refused = check([Envelope(body, seal, forged.openings())], pki.verifier(), peer="hub-pearl",
                              peer_may_forward=True, for_province="44")
    assert len(accepted) == 1 and refused == []
    s = _open(db_url, opened, "province-44")
    res = s.ingest(accepted, refused, via="hub-pearl", now_ms=T0 + 1)
    assert (res.applied, res.quarantined) == (0, 1)
    (row,) = s.quarantined()
    assert row.reason.startswith("unauthorised writer: a create by province-11 must involve its author"), row.reason
    assert row.charged == "province-11" and s.quarantine_body(row.id) == body
    assert s.get("service", sid) is None and _rows(s, services) == []
