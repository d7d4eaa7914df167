"""Upgrading a populated store from the previous release's schema (0001) to HEAD,
on SQLite and PostgreSQL (``db_url``).

The 0001 database is filled the way release 0.1 filled it: record states built
by the real write path (``core.apply.local_write``, merged with ``apply`` for
updates and concurrent writes) and stored as ``RecordState.to_bytes``, log rows
carrying real signed change bodies, plus cursors, keys, quarantine and meta
rows. The upgrade must keep every one of those rows byte for byte, backfill the
projection columns 0002 adds from the stored state exactly as the store itself
computes them, and leave a store that works.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from datetime import date

import sqlalchemy as sa

from core.apply import apply, local_write
from core.change import Change, state_provinces
from core.hlc import Timestamp
from core.person import validate_person
from core.record import RecordState
from core.routing import leaves_node
from core.samples import sample_person
from store.db import HEAD, current_revision, migrate, open_engine
from store.schema import records
from store.store import Store
from tests.support.pki import PKI

TODAY = date(2026, 1, 15)
T0 = 1_768_435_200_000
KIND = "person"
OWNER = "province-44"
PREVIOUS = "0001"
# More than one backfill page (the 0002 migration pages by 1000 records).
N_RECORDS = 1234

# The 0001 schema, as release 0.1 created it (what the migration file spells out).
OLD_COLUMNS = {
    "records": ["kind", "record_id", "state", "deleted", "conflicted", "provinces", "updated_ms"],
    "log": ["lsn", "origin", "seq", "kind", "record_id", "op", "operator", "at_ms", "digest", "body", "key_id",
            "signature", "seal_index", "seal_size", "proof", "routes", "shared", "via", "received_ms"],
    "log_dest": ["province", "lsn"],
    "quarantine": ["id", "received_ms", "peer", "origin", "seq", "kind", "record_id", "reason", "body", "key_id",
                   "signature"],
    "cursors": ["name", "value", "updated_ms"],
    "keys": ["key_id", "identity", "cert_der", "added_ms"],
    "meta": ["key", "value"],
}
ORDER = {"records": ["kind", "record_id"], "log": ["lsn"], "log_dest": ["province", "lsn"], "quarantine": ["id"],
         "cursors": ["name"], "keys": ["key_id"], "meta": ["key"]}
PROJECTION_SIZES = {"household_province": 2, "residence_province": 2, "moved_in_on": 10}


def _old(name: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in OLD_COLUMNS[name]))


def _routes_text(provinces: frozenset[str]) -> str:
    return "," + ",".join(sorted(provinces)) + "," if provinces else ","


def _plain(value: object) -> object:
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value


def _dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every 0001 column of every 0001 table, as plain values, in a fixed order."""
    out = {}
    with engine.connect() as conn:
        for name, cols in OLD_COLUMNS.items():
            t = _old(name)
            rows = conn.execute(sa.select(*(t.c[c] for c in cols)).order_by(*(t.c[c] for c in ORDER[name])))
            out[name] = [tuple(_plain(v) for v in r) for r in rows]
    return out


class OldRelease:
    """Writes rows the way release 0.1 did, into a 0001 database."""

    def __init__(self, pki: PKI) -> None:
        self.pki = pki
        self.rng = random.Random(20260115)
        self.clock = T0
        self.seqs: Counter[str] = Counter()
        self.states: dict[str, RecordState] = {}
        self.log: list[tuple[Change, bytes]] = []
        self.updated: dict[str, int] = {}

    def _tick(self, node: str) -> Timestamp:
        self.clock += 7
        return Timestamp(self.clock, 0, node)

    def person(self, household: str, residence: str) -> dict[str, object]:
        return validate_person(sample_person(self.rng, household=household, residence=residence, today=TODAY),
                               today=TODAY)

    def write(self, node: str, record_id: str, values: dict[str, object], op: str,
              base: RecordState | None = None) -> Change:
        """One change by ``node`` on top of ``base`` (default: the current state); merged into the record."""
        self.seqs[node] += 1
        current = self.states.get(record_id) if base is None else base
        change = local_write(current, kind=KIND, record_id=record_id, values=values, node=node,
                             seq=self.seqs[node], at=self._tick(node), op=op, operator=f"operator-{node[-2:]}-admin")
        self.states[record_id] = apply(self.states.get(record_id), change).state
        self.updated[record_id] = self.clock
        self.log.append((change, change.to_body()))
        return change

    def rows(self) -> dict[str, list[dict[str, object]]]:
        bodies = [body for _, body in self.log]
        by_origin: dict[str, list[int]] = {}
        for i, (change, _) in enumerate(self.log):
            by_origin.setdefault(change.origin, []).append(i)
        seals: list = [None] * len(self.log)
        for origin, idx in by_origin.items():  # one batch signature per author
            for i, seal in zip(idx, self.pki.signer(origin).seal_batch([bodies[i] for i in idx])):
                seals[i] = seal
        log_rows, dest_rows = [], []
        for lsn, ((change, body), seal) in enumerate(zip(self.log, seals), start=1):
            routes = change.routes
            log_rows.append(dict(
                lsn=lsn, origin=change.origin, seq=change.seq, kind=change.kind, record_id=change.record_id,
                op=change.op, operator=change.operator, at_ms=change.at.wall_ms,
                digest=hashlib.sha256(body).digest(), body=body, key_id=seal.key_id, signature=seal.signature,
                seal_index=seal.index, seal_size=seal.size, proof=b"".join(seal.proof),
                routes=_routes_text(routes), shared=leaves_node(routes, change.origin.split("-")[1]),
                via="local" if change.origin == OWNER else "hub-pearl", received_ms=change.at.wall_ms + 3))
            dest_rows += [{"province": p, "lsn": lsn} for p in sorted(routes)]
        record_rows = [dict(kind=KIND, record_id=rid, state=st.to_bytes(), deleted=st.deleted,
                            conflicted=bool(st.conflicts()), provinces=_routes_text(state_provinces(st)),
                            updated_ms=self.updated[rid])
                       for rid, st in sorted(self.states.items())]
        signer = self.pki.signer("province-45")
        return {
            "records": record_rows,
            "log": log_rows,
            "log_dest": dest_rows,
            "quarantine": [dict(id=1, received_ms=T0 + 5, peer="hub-pearl", origin="province-45", seq=999,
                                kind=KIND, record_id="0f0e0d0c-0000-4000-8000-000000000001",
                                reason="bad signature: signature by ed25519:0000 does not verify",
                                body=b'{"not":"a change"}', key_id="ed25519:0000000000000000",
                                signature=b"\x00" * 64)],
            "cursors": [dict(name="push", value=self.seqs[OWNER] - 3, updated_ms=T0 + 11),
                        dict(name="pull:hub-pearl", value=len(log_rows) + 17, updated_ms=T0 + 12)],
            "keys": [dict(key_id=signer.key_id, identity=signer.identity, cert_der=signer.cert_der, added_ms=T0)],
            "meta": [dict(key="owner", value=OWNER)],
        }


def _populate(engine: sa.Engine, old: OldRelease) -> None:
    rng = old.rng
    ids = []
    for i in range(N_RECORDS):
        household, residence = rng.choice([("44", "44"), ("44", "45"), ("45", "44"), ("11", "44"), ("44", "31")])
        rid = f"{i:08d}-0000-4000-8000-{rng.getrandbits(48):012x}"
        old.write(OWNER, rid, old.person(household, residence), "create")
        ids.append(rid)
    for rid in ids[::7]:  # updates: a move, a city
        old.write(OWNER, rid, {"residence_province": "45", "residence_city": "南宁市", "moved_in_on": "2025-11-02"},
                  "update")
    for rid in ids[3::50]:
        old.write(OWNER, rid, {}, "delete")
    # Concurrent edits of the same field by 44 and 45: an open conflict, the later HLC shown.
    for rid in ids[5::100]:
        base = old.states[rid]
        old.write(OWNER, rid, {"residence_province": "44", "moved_in_on": "2025-03-01"}, "update", base=base)
        old.write("province-45", rid, {"residence_province": "45", "moved_in_on": "2025-04-01"}, "update",
                  base=base)
    rows = old.rows()
    with engine.begin() as conn:
        for name in OLD_COLUMNS:
            if rows[name]:
                conn.execute(sa.insert(_old(name)), rows[name])


def _expected_projection(state: RecordState) -> tuple[object, object, object]:
    """What the store writes into (household, residence, moved_on) for a state."""
    shown = state.values()

    def text(name: str) -> object:
        v = shown.get(name)
        return v if isinstance(v, str) and len(v) <= PROJECTION_SIZES[name] else None

    return text("household_province"), text("residence_province"), text("moved_in_on")


def _projections(engine: sa.Engine) -> dict[str, tuple[object, object, object]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT record_id, household, residence, moved_on FROM records "
                                    "WHERE kind = 'person'"))
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_upgrade_of_a_populated_previous_release_store_keeps_every_row_and_backfills(db_url: str,
                                                                                     pki: PKI) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine, PREVIOUS)
        assert current_revision(engine) == PREVIOUS
        cols = [c["name"] for c in sa.inspect(engine).get_columns("records")]
        assert cols == OLD_COLUMNS["records"], "0001 is not the previous release's schema"
        old = OldRelease(pki)
        _populate(engine, old)
        before = _dump(engine)
    finally:
        engine.dispose()
    assert len(before["records"]) == N_RECORDS
    assert sum(1 for _, st in old.states.items() if st.conflicts()) >= 10
    assert sum(1 for _, st in old.states.items() if st.deleted) >= 10

    store = Store.open(db_url, owner=OWNER)  # what a node does on start: upgrade to head, then open
    try:
        assert current_revision(store.engine) == HEAD
        after = _dump(store.engine)
        for name in OLD_COLUMNS:
            # 0009 marks a store holding persons for the person-key re-key (done when opened with the secret)
            expected = before[name] + ([("person_keys", "pending")] if name == "meta" else [])
            assert after[name] == expected, f"the upgrade changed rows of {name}"

        # Projections backfilled from the stored state, exactly as the store computes them.
        proj = _projections(store.engine)
        assert set(proj) == set(old.states)
        wrong = {rid: (proj[rid], _expected_projection(st)) for rid, st in old.states.items()
                 if proj[rid] != _expected_projection(st)}
        assert wrong == {}, f"{len(wrong)} records backfilled wrongly, e.g. {list(wrong.items())[:3]}"
        conflicted = [rid for rid, st in old.states.items() if st.conflicts()]
        for rid in conflicted:  # the shown (winning) value, not an arbitrary surviving one
            assert proj[rid][1:] == ("45", "2025-04-01"), (rid, proj[rid])

        # The store works on the upgraded database.
        for rid, st in list(old.states.items())[::97] + [(r, old.states[r]) for r in conflicted[:3]]:
            assert store.get(KIND, rid) == st
        expected_flows = Counter()
        for st in old.states.values():
            if not st.deleted:
                h, r, m = _expected_projection(st)
                expected_flows[(h, r, m[:7] if isinstance(m, str) else None)] += 1
        flows = {(h, r, m): n for h, r, m, n in store.flow_counts()}
        assert flows == dict(expected_flows)
        assert store.count_records() == sum(1 for st in old.states.values() if not st.deleted)
        assert store.count_records(conflicted_only=True) == len(conflicted)
        assert store.last_seq() == old.seqs[OWNER]
        assert store.cursors() == {name: (value, at) for name, value, at in before["cursors"]}

        # A new write continues the sequence and projects like any other.
        rid = "ffffffff-0000-4000-8000-000000000001"
        new = store.write_local(KIND, rid, lambda cur: ("create", old.person("45", "44")), operator=None,
                                now_ms=old.clock + 1000, seal=pki.sealer(OWNER))
        assert new.seq == old.seqs[OWNER] + 1
        assert _projections(store.engine)[rid] == _expected_projection(new.state)
        flows_after = Counter({(h, r, m): n for h, r, m, n in store.flow_counts()})
        h, r, m = _expected_projection(new.state)
        expected_flows[(h, r, m[:7])] += 1  # type: ignore[index]
        assert flows_after == expected_flows
    finally:
        store.close()

    # Opening again is a no-op upgrade: nothing rewritten.
    engine = open_engine(db_url)
    try:
        migrate(engine)
        assert current_revision(engine) == HEAD
        assert _dump(engine)["log"][: len(before["log"])] == before["log"]
    finally:
        engine.dispose()


def test_upgrade_backfills_only_projections_the_store_itself_would_write(db_url: str, pki: PKI) -> None:
    """A stored state may hold values this release's rules would not have produced (a change
    signed by a newer release passes intake unjudged, see runtime.records). The store never
    projects those (``store.records._text``: text that fits, else NULL; the state stays
    authoritative); the backfill must do the same, and must not fail the whole upgrade
    (PostgreSQL refuses text longer than the column) or write values the store never would."""
    engine = open_engine(db_url)
    try:
        migrate(engine, PREVIOUS)
        old = OldRelease(pki)
        plain = "00000000-0000-4000-8000-000000000001"
        odd = "00000000-0000-4000-8000-000000000002"
        numeric = "00000000-0000-4000-8000-000000000003"
        old.write(OWNER, plain, old.person("44", "45"), "create")
        values = {**old.person("45", "44"), "moved_in_on": "2025-06-01T08:30:00+08:00"}  # a newer, longer format
        old.write("province-45", odd, values, "create")
        values = {**old.person("44", "11"), "moved_in_on": 20250601}  # not text at all
        old.write(OWNER, numeric, values, "create")
        rows = old.rows()
        with engine.begin() as conn:
            for name in OLD_COLUMNS:
                conn.execute(sa.insert(_old(name)), rows[name])
        before = _dump(engine)
    finally:
        engine.dispose()

    store = Store.open(db_url, owner=OWNER)
    try:
        assert current_revision(store.engine) == HEAD
        assert _dump(store.engine) == {**before, "meta": before["meta"] + [("person_keys", "pending")]}
        proj = _projections(store.engine)
        for rid in (plain, odd, numeric):
            assert proj[rid] == _expected_projection(old.states[rid]), rid
        assert proj[odd] == ("45", "44", None) and proj[numeric] == ("44", "11", None)
        assert store.get(KIND, odd) == old.states[odd]  # the state itself is untouched
    finally:
        store.close()


def test_opening_with_the_federation_secret_rekeys_legacy_people_once(db_url: str, pki: PKI) -> None:
    """Migration 0009 marks the store; the node's first start with its secret re-keys each legacy
    person whose ID is valid and agrees with its birth date and sex, and that no other record
    shares; the others are left and counted; each state is kept whole under its new key."""
    from core.personkey import person_key

    secret = bytes(range(32))
    engine = open_engine(db_url)
    try:
        migrate(engine, PREVIOUS)
        old = OldRelease(pki)
        _populate(engine, old)
        ids = sorted(old.states)
        twin_a, twin_b, odd = ids[1], ids[2], ids[4]
        # Two legacy records of one person (a twin registration) and one whose birth date is not its ID's.
        twin = old.states[twin_a]
        shared_id = twin.values()["id_number"]
        old.write(OWNER, twin_b, {"id_number": shared_id, "birth_date": twin.values()["birth_date"],
                                  "sex": twin.values()["sex"]}, "update")
        old.write(OWNER, odd, {"birth_date": "1901-01-01"}, "update")
        # Two legacy records of another person that agree on name, birth date and sex: the least id is re-keyed.
        same_a, same_b = ids[6], ids[8]
        same = old.states[same_a].values()
        old.write(OWNER, same_b, {f: same[f] for f in ("id_number", "name", "birth_date", "sex")}, "update")
        with engine.begin() as conn:
            for rid in (twin_b, odd, same_b):
                st = old.states[rid]
                conn.execute(sa.update(records).where(records.c.record_id == rid).values(state=st.to_bytes()))
    finally:
        engine.dispose()
    messages: list[str] = []
    store = Store.open(db_url, owner=OWNER, person_secret=secret, upgraded=messages.append)
    try:
        held = {s.record_id: s for s in store.iter_records(KIND, include_deleted=True)}
        left = {twin_a, twin_b, odd, max(same_a, same_b)}
        assert left <= set(held)
        for rid, st in old.states.items():
            if rid in left:
                assert held[rid].to_bytes() == st.to_bytes()
                continue
            key = person_key(secret, str(st.values()["id_number"]))
            assert rid not in held and held[key].to_bytes() == st.to_bytes()  # every version, every conflict
        (said,) = messages
        assert f"re-keyed {N_RECORDS - 4} person records" in said and "3 sharing an ID" in said
        assert "1 whose birth date or sex disagree" in said
        assert shared_id not in said and all(str(st.values().get("name")) not in said for st in old.states.values())
    finally:
        store.close()
    again: list[str] = []
    Store.open(db_url, owner=OWNER, person_secret=secret, upgraded=again.append).close()
    assert again == []  # once


def test_rekey_rewrites_the_person_references_of_other_records(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from core.personkey import person_key
    from store.schema import meta
    from store.schema import services as services_table

    secret = bytes(range(32))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(url, owner=OWNER)
    person = validate_person(sample_person(random.Random(3), household="44", residence="44", today=TODAY),
                             today=TODAY)
    pid, sid = str(uuid.uuid4()), str(uuid.uuid4())
    store.close()
    engine = open_engine(url)
    try:
        state = local_write(None, kind=KIND, record_id=pid, values=person, node=OWNER, seq=1,
                            at=Timestamp(T0, 0, OWNER), op="create", operator=None).state
        service = local_write(None, kind="service", record_id=sid,
                              values={"person_id": pid, "type": "pregnancy_check", "on": "2026-01-02",
                                      "provider_province": "44", "household_province": "44",
                                      "residence_province": "44"},
                              node=OWNER, seq=2, at=Timestamp(T0 + 1, 0, OWNER), op="create", operator=None).state
        from store import projections
        from store import records as record_rows

        with engine.begin() as conn:
            record_rows.save_many(conn, [(state, None), (service, None)], T0)
            projections.save(conn, [service])
            conn.execute(sa.insert(meta).values(key="person_keys", value="pending"))  # what 0009 does
    finally:
        engine.dispose()
    messages: list[str] = []
    store = Store.open(url, owner=OWNER, person_secret=secret, upgraded=messages.append)
    try:
        key = person_key(secret, str(person["id_number"]))
        assert store.get(KIND, key) is not None and store.get(KIND, pid) is None
        assert store.get("service", sid).values()["person_id"] == key
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(services_table.c.person_id)).scalar() == key
        assert "rewrote 1 references" in messages[0]
    finally:
        store.close()
