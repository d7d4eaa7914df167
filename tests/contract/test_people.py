"""One person, one record on a node, on SQLite and PostgreSQL through ``db_url``.

``Store.people_by_id_number`` (the one lookup of "is this person here"), ``person add`` and
``person import`` as runtime.people carries them out (a real RecordService, Store and federation
signer), and ``Store.duplicates`` (store.duplicates), including the SQL plan on SQLite.
"""

from __future__ import annotations

import random
import uuid
from datetime import date
from typing import Callable, Iterator

import pytest

from core.errors import AlreadyHeld, ValidationError
from core.idnumber import make_id_number
from core.samples import sample_person
from runtime.people import DIFFERING, NEW, REFUSED, UNCHANGED, UPDATED, write_people
from runtime.records import RecordService
from store.duplicates import SAME_ID, SAME_PERSON
from store.store import Store
from tests.support.pki import PKI

TODAY = date(2026, 1, 15)
T0 = 1_768_435_200_000


class _Peer:
    """What RecordService asks of its node's peer: the store, the identity and the trusted keys."""

    def __init__(self, store: Store, pki: PKI) -> None:
        self.store, self.identity, self.keyring = store, store.owner, pki.keyring()

    def sync_revocations(self) -> None:
        pass


@pytest.fixture
def node44(db_url: str, pki: PKI) -> Iterator[RecordService]:
    store = Store.open(db_url, owner="province-44")
    yield RecordService(_Peer(store, pki), pki.signer("province-44"), today=lambda: TODAY,  # type: ignore[arg-type]
                        person_secret=bytes(range(32)))
    store.close()


def _person(rng: random.Random, **kw: object) -> dict[str, object]:
    return {**sample_person(rng, household="65", residence="44", today=TODAY), **kw}


def _live_people(store: Store) -> int:
    return sum(1 for _ in store.iter_records("person"))


def _set(values: dict[str, object]) -> Callable[[object], tuple[str, dict[str, object]]]:
    return lambda current: ("create" if current is None else "update", values)


def test_add_of_a_held_person_never_makes_a_second_record(node44: RecordService) -> None:
    rng = random.Random(1)
    p = _person(rng)
    first = node44.write("create", "person", "", p, "operator-44-a")
    # The same values (a 15-digit form of the number, lower-case sex: the same once normalised).
    again = node44.write("create", "person", "", {**p, "sex": str(p["sex"]).lower()}, "operator-44-a")
    assert again.record_id == first.record_id
    with pytest.raises(AlreadyHeld) as err:
        node44.write("create", "person", "", {**p, "name": "张叁", "residence_city": "汕头"}, "operator-44-a")
    assert err.value.person_id == first.record_id and err.value.fields == ("name", "residence_city")
    message = str(err.value)
    assert first.record_id in message and "name, residence_city" in message and "person update" in message
    assert "张叁" not in message and str(p["id_number"]) not in message  # field names only, never values
    # A given person_id does not get around it either.
    with pytest.raises(AlreadyHeld):
        node44.write("create", "person", str(uuid.uuid4()), {**p, "name": "张叁"}, "operator-44-a")
    assert _live_people(node44.replica.store) == 1
    assert node44.replica.store.get("person", first.record_id).values()["name"] == p["name"]  # type: ignore[union-attr]


def test_a_15_digit_number_finds_the_person_held_under_its_18_digit_form(node44: RecordService) -> None:
    eighteen = make_id_number("440105", date(1975, 3, 9), 123)
    p = {"id_number": eighteen, "name": "李四", "sex": "M", "birth_date": "1975-03-09",
         "household_province": "44", "residence_province": "44"}
    held = node44.write("create", "person", "", p, None)
    fifteen = eighteen[:6] + eighteen[8:17]
    assert node44.write("create", "person", "", {**p, "id_number": fifteen}, None).record_id == held.record_id
    assert set(node44.replica.store.people_by_id_number([eighteen, fifteen])) == {eighteen}


def test_import_rows_are_new_unchanged_differing_or_refused_and_a_rerun_adds_nobody(node44: RecordService) -> None:
    rng = random.Random(2)
    people = [_person(rng) for _ in range(6)]
    rows = [("create", "person", "", p) for p in people]
    bad = ("create", "person", "", {**people[0], "children": -1})
    out = write_people(node44, [*rows, bad, rows[2]], None)  # row 7: the same person as row 3, in one batch
    assert [o.outcome for o in out] == [NEW] * 6 + [REFUSED, UNCHANGED]
    assert out[7].record_id == out[2].record_id
    assert isinstance(out[6].error, ValidationError) and out[6].error.field == "children"
    ids = [o.record_id for o in out[:6]]

    changed = {**people[1], "name": "改名", "children": 7}
    again = write_people(node44, [*rows, ("create", "person", "", changed)], None)
    assert [o.outcome for o in again] == [UNCHANGED] * 6 + [DIFFERING]
    assert again[6].record_id == ids[1] and again[6].differing == ("name", "children")
    assert node44.replica.store.get("person", ids[1]).values()["name"] == people[1]["name"]  # type: ignore[union-attr]

    # --update writes the differing fields of the held record, and only those.
    updated = write_people(node44, [("create", "person", str(uuid.uuid4()), changed)], None, update=True)
    assert [(o.outcome, o.record_id, o.differing) for o in updated] == [(UPDATED, ids[1], ("name", "children"))]
    values = node44.replica.store.get("person", ids[1]).values()  # type: ignore[union-attr]
    assert (values["name"], values["children"], values["id_number"]) == ("改名", 7, people[1]["id_number"])
    assert _live_people(node44.replica.store) == 6


def test_import_validates_each_person_once_and_stores_what_a_single_write_stores(
        node44: RecordService, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_people validates (and keys) a row before its lookup; its write does not do either again
    (runtime.people.Validated), yet stores exactly what ``person add`` of the same input stores.
    Input that is not marked (any other caller's, or anything decoded) is still validated."""
    import dataclasses

    from core import kinds

    person = kinds.KINDS["person"]
    calls: list[bool] = []

    def counting(fields, **kw):  # type: ignore[no-untyped-def]
        calls.append(bool(kw.get("partial")))
        return person.validate(fields, **kw)

    monkeypatch.setitem(kinds.KINDS, "person", dataclasses.replace(person, validate=counting))
    rng = random.Random(5)
    people = [_person(rng) for _ in range(4)]
    raw = [{**p, "sex": str(p["sex"]).lower(), "name": f"  {p['name']} "} for p in people]  # normalised on the way in
    out = write_people(node44, [("create", "person", "", r) for r in raw], "operator-44-a")
    assert [o.outcome for o in out] == [NEW] * 4 and calls == [False] * 4
    calls.clear()
    changed = {**raw[0], "children": 3}
    (upd,) = write_people(node44, [("create", "person", "", changed)], "operator-44-a", update=True)
    assert (upd.outcome, upd.differing, calls) == (UPDATED, ("children",), [False])

    store = node44.replica.store
    for o, p in zip(out[1:], people[1:]):
        held = store.get("person", o.record_id)
        assert held is not None and held.values() == node44.prepare("create", "person", "", p)[2](None)[1]
    assert store.get("person", out[0].record_id).values()["children"] == 3  # type: ignore[union-attr]
    # An unmarked row through write_many is validated as ever: refused, naming the field, nothing written.
    calls.clear()
    (refused,) = node44.write_many([("create", "person", "", {**_person(rng), "sex": "X"})], "operator-44-a")
    assert isinstance(refused, ValidationError) and refused.field == "sex" and calls == [False]
    assert _live_people(store) == 4


def test_two_rows_of_one_new_person_in_one_batch_make_one_record(node44: RecordService) -> None:
    rng = random.Random(3)
    p = _person(rng)
    out = write_people(node44, [("create", "person", "", p), ("create", "person", "", {**p, "name": "别名"})], None)
    assert [o.outcome for o in out] == [NEW, DIFFERING] and out[1].differing == ("name",)
    out = write_people(node44, [("create", "person", "", {**p, "id_number": "x"}),
                                ("create", "person", "", p), ("create", "person", "", {**p, "name": "别名"})],
                       None, update=True)
    assert [o.outcome for o in out] == [REFUSED, UNCHANGED, UPDATED]
    assert _live_people(node44.replica.store) == 1
    assert node44.replica.store.get("person", out[1].record_id).values()["name"] == "别名"  # type: ignore[union-attr]


def test_a_row_matching_a_refused_new_row_of_its_batch_is_refused_too(node44: RecordService) -> None:
    rng = random.Random(4)
    # Involves 65 and 11 only: province-44 may not write it, so the first row is refused at write time.
    p = {**_person(rng), "residence_province": "11"}
    p.pop("residence_city", None)
    out = write_people(node44, [("create", "person", "", p), ("create", "person", "", p)], None)
    assert [o.outcome for o in out] == [REFUSED, REFUSED]
    assert _live_people(node44.replica.store) == 0


def test_lookup_skips_deleted_and_other_kinds_and_takes_the_first_of_legacy_duplicates(
        node44: RecordService, pki: PKI) -> None:
    store, seal = node44.replica.store, pki.sealer("province-44")
    rng = random.Random(5)
    p = _person(rng)
    a, b = sorted(str(uuid.uuid4()) for _ in range(2))
    # Legacy duplicates, as an old release (or an import before this one) wrote them: two ids, one number.
    store.write_local_batch([("person", b, _set(p)), ("person", a, _set(p))], operator=None, now_ms=T0,
                            seal=seal)
    assert store.people_by_id_number([str(p["id_number"])])[str(p["id_number"])].record_id == a
    store.write_local("person", a, lambda current: ("delete", {}), operator=None, now_ms=T0 + 1, seal=seal)
    assert store.people_by_id_number([str(p["id_number"])])[str(p["id_number"])].record_id == b
    assert store.people_by_id_number(["11010519491231002X"]) == {}


def test_duplicates_pairs_each_group_with_its_first_record(node44: RecordService, pki: PKI) -> None:
    store, seal = node44.replica.store, pki.sealer("province-44")
    rng = random.Random(6)
    base = _person(rng, sex="F", birth_date="1990-05-06")
    area_a, area_b = "440103", "650102"
    same = make_id_number(area_a, date(1990, 5, 6), 2)
    other = make_id_number(area_b, date(1990, 5, 6), 4)
    male = make_id_number(area_b, date(1990, 5, 6), 5)
    ids = sorted(str(uuid.uuid4()) for _ in range(6))
    items = [
        ("person", ids[0], _set({**base, "id_number": same})),
        ("person", ids[1], _set({**base, "id_number": same})),            # same number: ids[0]
        ("person", ids[2], _set({**base, "id_number": same, "name": "x"})),  # same number, another name
        ("person", ids[3], _set({**base, "id_number": other})),           # same name, birth, sex; other number
        ("person", ids[4], _set({**base, "id_number": male, "sex": "M"})),  # another sex: not a match
        ("person", ids[5], _set(_person(rng))),                           # nobody's duplicate
    ]
    store.write_local_batch(items, operator=None, now_ms=T0, seal=seal)
    pairs = [(d.first, d.second, d.why) for d in store.duplicates(page=2)]
    assert pairs == [(ids[0], ids[1], SAME_ID), (ids[0], ids[2], SAME_ID), (ids[0], ids[3], SAME_PERSON)]
    store.write_local("person", ids[1], lambda current: ("delete", {}), operator=None, now_ms=T0 + 1, seal=seal)
    assert [(d.second, d.why) for d in store.duplicates()] == [(ids[2], SAME_ID), (ids[3], SAME_PERSON)]


def test_duplicates_read_indexes_not_the_records(node44: RecordService, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the plan is checked on SQLite; PostgreSQL chooses by its statistics")
    from store import duplicates
    store = node44.replica.store
    with store.engine.connect() as conn:
        for query in (duplicates.same_id_number_query(), duplicates.same_name_birth_sex_query()):
            sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
            details = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()]
            on_records = [d for d in details if " records" in d or " head" in d]
            assert on_records and all("USING COVERING INDEX" in d or "USING INDEX" in d or "PRIMARY KEY" in d
                                      for d in on_records), details


def _identity_columns(store: Store) -> dict[str, tuple]:
    import sqlalchemy as sa
    from store.schema import records
    with store.engine.connect() as conn:
        q = sa.select(records.c.record_id, records.c.id_number, records.c.person_name, records.c.birth_date,
                      records.c.sex).where(records.c.kind == "person")
        return {r[0]: tuple(r[1:]) for r in conn.execute(q)}


def test_the_0010_upgrade_backfills_the_identity_columns_as_the_store_writes_them(db_url: str, pki: PKI) -> None:
    from alembic import command
    from alembic.config import Config

    from store.db import HEAD, MIGRATIONS, current_revision, migrate

    store = Store.open(db_url, owner="province-44")
    seal = pki.sealer("province-44")
    rng = random.Random(8)
    ids = [str(uuid.uuid4()) for _ in range(1203)]  # more than one backfill page
    store.write_local_batch([("person", rid, _set(_person(rng))) for rid in ids], operator=None, now_ms=T0,
                            seal=seal)
    store.write_local("person", ids[0], _set({"name": "改了"}), operator=None, now_ms=T0 + 1, seal=seal)
    store.write_local("person", ids[1], lambda current: ("delete", {}), operator=None, now_ms=T0 + 2, seal=seal)
    written = _identity_columns(store)
    assert written[ids[0]][1] == "改了" and all(v is not None for v in written[ids[2]])
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:  # back to the release before, then up again, as an upgrade runs
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007_log_received")
    assert current_revision(store.engine) == "0007_log_received"
    migrate(store.engine)
    assert current_revision(store.engine) == HEAD
    assert _identity_columns(store) == written
    store.close()
