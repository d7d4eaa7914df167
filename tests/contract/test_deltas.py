"""The store carrying out core.graph's decisions on v2 deltas, on SQLite and PostgreSQL.

docs/design/v2-wire.md 8.2, step 1: held deltas are logged in an order where each follows its
dependencies and the record's state is what the history makes; a delta whose dependencies are
missing is parked durably (across a restart) and released when they arrive; a delta stamped a
day ahead waits for the clock; a province not involved in the record is refused and charged;
replicas that got the same deltas in different orders store byte-identical records.

Each delta is signed with the author's real key and its seal verified before it is received,
as intake will do once the wire carries deltas.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from core.change import Envelope
from core.delta import Delta, parse
from core.errors import LocalError
from core.hlc import Timestamp
from core.person import validate_person
from core.samples import sample_person
from store.store import ReceivedDelta, Store
from tests.support.pki import PKI

TODAY = date(2026, 1, 15)
T0 = 1_768_435_200_000
DAY_MS = 24 * 3600 * 1000


class Province:
    """A province node writing deltas into its own SQLite store."""

    def __init__(self, code: str, pki: PKI, tmp: Path, opened: list[Store]) -> None:
        self.owner = f"province-{code}"
        self.pki = pki
        self.store = Store.open(f"sqlite:///{tmp / f'{code}.db'}", owner=self.owner)
        opened.append(self.store)

    def write(self, record_id: str, values: dict, *, op: str = "update", now_ms: int = T0,
              accepts: tuple[str, ...] = (), merges: tuple[str, ...] = ()) -> ReceivedDelta:
        did, delta = self.store.write_delta("person", record_id, values, op=op, operator=None, now_ms=now_ms,
                                            seal=self.pki.sealer(self.owner), accepts=accepts, merges=merges)
        (entry,) = [e for e in self.store.history("person", delta.record_id)
                    if hashlib.sha256(e.body).hexdigest() == did]
        return received(self.pki, Envelope(entry.body, entry.seal, delta.openings()))


def received(pki: PKI, env: Envelope) -> ReceivedDelta:
    """What intake hands the store: the seal verified, the signer known."""
    signer = pki.verifier().verify(env.body, env.seal)
    return ReceivedDelta(hashlib.sha256(env.body).hexdigest(), parse(env.body, env.openings), env, signer)


def forged(pki: PKI, signer: str, delta: Delta) -> ReceivedDelta:
    body = delta.to_body()
    (seal,) = pki.sealer(signer)([body])
    return received(pki, Envelope(body, seal, delta.openings()))


def person(household: str, residence: str, seed: int = 1) -> dict:
    import random

    values = validate_person(sample_person(random.Random(seed), household=household, residence=residence,
                                           today=TODAY), today=TODAY)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
def p11(pki: PKI, tmp_path: Path, opened: list[Store]) -> Province:
    return Province("11", pki, tmp_path, opened)


@pytest.fixture
def p44(pki: PKI, tmp_path: Path, opened: list[Store]) -> Province:
    return Province("44", pki, tmp_path, opened)


def receiver(db_url: str, opened: list[Store], owner: str = "province-44") -> Store:
    s = Store.open(db_url, owner=owner)
    opened.append(s)
    return s


def test_held_deltas_make_the_authors_record(db_url: str, opened: list[Store], p11: Province) -> None:
    create = p11.write("k1", person("11", "44"), op="create")
    edit = p11.write("k1", {"children": 2}, now_ms=T0 + 1000)
    s = receiver(db_url, opened)
    result = s.receive_deltas([create, edit], via="hub-pearl", now_ms=T0 + 2000)
    assert (result.held, result.parked, result.quarantined, result.duplicates) == (2, 0, 0, 0)
    assert s.get("person", "k1") == p11.store.get("person", "k1")
    assert s.get("person", "k1").values()["children"] == 2  # type: ignore[union-attr]
    again = s.receive_deltas([create, edit], via="hub-pearl", now_ms=T0 + 3000)
    assert (again.held, again.duplicates) == (0, 2)
    assert [e.seq for e in s.history("person", "k1")] == [1, 2]


def test_a_delta_before_its_dependency_waits_durably_and_is_released(db_url: str, opened: list[Store],
                                                                     p11: Province) -> None:
    create = p11.write("k1", person("11", "44"), op="create")
    edit = p11.write("k1", {"children": 3}, now_ms=T0 + 1000)
    s = receiver(db_url, opened)
    first = s.receive_deltas([edit], via="hub-pearl", now_ms=T0 + 2000)
    assert (first.held, first.parked) == (0, 1)
    assert s.get("person", "k1") is None
    (waiting,) = s.parked_deltas()
    assert (waiting.digest, waiting.origin, waiting.seq, waiting.waiting_for) == (edit.id, "province-11", 2,
                                                                                  (create.id,))
    s.close()
    opened.remove(s)
    s = receiver(db_url, opened)  # parking is durable: a restart keeps the delta and what it waits for
    assert [p.digest for p in s.parked_deltas()] == [edit.id]
    second = s.receive_deltas([create], via="hub-bohai", now_ms=T0 + 3000)
    assert (second.held, second.parked, second.released) == (2, 0, [edit.id])
    assert s.parked_deltas() == []
    assert s.get("person", "k1") == p11.store.get("person", "k1")
    # The log keeps dependency order (the create first), and each entry the peer it came via.
    assert [(e.seq, e.via) for e in s.history("person", "k1")] == [(1, "hub-bohai"), (2, "hub-pearl")]


def test_a_province_not_involved_is_refused_and_charged(db_url: str, opened: list[Store], p11: Province,
                                                        pki: PKI) -> None:
    create = p11.write("k1", person("11", "65"), op="create")
    s = receiver(db_url, opened, owner="province-65")
    s.receive_deltas([create], via="hub-northwest", now_ms=T0 + 1000)
    before = s.get("person", "k1")
    # 44 claims nothing and still tries: an update of someone else's record, moving it to itself.
    hijack = Delta("person", "k1", "province-44", 0, 1, Timestamp(T0 + 2000, 0, "province-44"), "update", None,
                   (create.id,), (), {"residence_province": "44", "name": "劫持", "_deleted": False},
                   frozenset({"11", "44", "65"}), {})
    result = s.receive_deltas([forged(pki, "province-44", hijack)], via="hub-northwest", now_ms=T0 + 3000)
    assert (result.held, result.quarantined) == (0, 1)
    assert s.get("person", "k1") == before
    (row,) = s.quarantined()
    assert row.charged == "province-44" and "not involved" in row.reason and "劫持" not in row.reason
    assert row.reason.startswith("unauthorised writer: province-44 is not involved"), row.reason


def test_a_delta_a_day_ahead_waits_for_the_clock(db_url: str, opened: list[Store], p11: Province) -> None:
    create = p11.write("k1", person("11", "44"), op="create", now_ms=T0 + 2 * DAY_MS)
    s = receiver(db_url, opened)
    assert s.receive_deltas([create], via="hub-pearl", now_ms=T0).parked == 1
    assert s.parked_deltas()[0].waiting_for == ("time",)
    assert s.release_waiting(T0 + DAY_MS // 2).held == 0
    released = s.release_waiting(T0 + 2 * DAY_MS)
    assert released.released == [create.id]
    assert s.get("person", "k1") == p11.store.get("person", "k1") and s.parked_deltas() == []


def test_concurrent_writes_conflict_alike_in_any_order(db_url: str, opened: list[Store], tmp_path: Path,
                                                       pki: PKI, p11: Province, p44: Province) -> None:
    create = p11.write("k1", person("11", "44"), op="create")
    p44.store.receive_deltas([create], via="hub-pearl", now_ms=T0 + 500)
    a = p11.write("k1", {"name": "张三"}, now_ms=T0 + 1000)
    b = p44.write("k1", {"name": "张叁"}, now_ms=T0 + 1000)
    s = receiver(db_url, opened, owner="hub-national")
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}", owner="hub-national")
    opened.append(other)
    assert s.receive_deltas([create, a, b], via="hub-pearl", now_ms=T0 + 2000).held == 3
    assert other.receive_deltas([b], via="hub-bohai", now_ms=T0 + 2000).parked == 1
    assert other.receive_deltas([a, create], via="hub-bohai", now_ms=T0 + 2000).held == 3
    state = s.get("person", "k1")
    assert state is not None and set(state.conflicts()) == {"name"}
    assert state.to_bytes() == other.get("person", "k1").to_bytes()  # type: ignore[union-attr]
    assert s.count_records(conflicted_only=True) == 1
    # A settle by an involved province, written on both heads, ends the conflict everywhere.
    p44.store.receive_deltas([a], via="hub-pearl", now_ms=T0 + 2500)
    settle = p44.write("k1", {"name": "张三"}, op="settle", now_ms=T0 + 3000)
    assert settle.delta.deps == tuple(sorted({a.id, b.id}))
    for store in (s, other):
        store.receive_deltas([settle], via="hub-pearl", now_ms=T0 + 4000)
        assert store.get("person", "k1").conflicts() == {}  # type: ignore[union-attr]


def test_an_uninvolved_local_write_is_refused_and_writes_nothing(p11: Province, p44: Province) -> None:
    create = p11.write("k1", person("11", "65"), op="create")
    p44.store.receive_deltas([create], via="hub-pearl", now_ms=T0 + 500)
    with pytest.raises(LocalError) as err:
        p44.write("k1", {"name": "劫持"}, now_ms=T0 + 1000)
    assert "province-44" in str(err.value) or "44" in str(err.value)
    assert p44.store.last_seq() == 0
    assert p44.store.get("person", "k1") == p11.store.get("person", "k1")



def test_a_link_makes_two_keys_one_record_whatever_arrives_first(db_url: str, opened: list[Store], pki: PKI,
                                                                  tmp_path: Path, p11: Province) -> None:
    p31 = Province("31", pki, tmp_path, opened)
    newborn = {k: v for k, v in person("11", "31", seed=3).items() if k != "id_number"} | {"name": "张三"}
    a_create = p31.write("r-0b1d", newborn | {"children": 1}, op="create")  # registered before the ID was known
    b_create = p11.write("p-7q2x", person("11", "31", seed=3) | {"name": "张叁"}, op="create", now_ms=T0 + 1)
    p31.store.receive_deltas([b_create], via="hub-northwest", now_ms=T0 + 500)
    alias = p31.write("p-7q2x", {}, op="alias", merges=("r-0b1d",), now_ms=T0 + 1000)
    assert set(alias.delta.deps) == {a_create.id, b_create.id} and alias.delta.routes == frozenset({"11", "31"})
    linked = p31.store.get("person", "p-7q2x")
    assert linked is not None and {v.value for v in linked.fields["name"]} == {"张三", "张叁"}
    assert p31.store.record_graph("person", "r-0b1d").record_id == "p-7q2x"  # both keys: one record

    s = receiver(db_url, opened, owner="hub-national")
    first = s.receive_deltas([alias], via="hub-northwest", now_ms=T0 + 2000)
    assert first.parked == 1 and set(s.parked_deltas()[0].waiting_for) == {a_create.id, b_create.id}
    assert s.receive_deltas([b_create], via="hub-bohai", now_ms=T0 + 2000).parked == 0
    last = s.receive_deltas([a_create], via="hub-northwest", now_ms=T0 + 2000)  # under its own key
    assert last.released == [alias.id] and s.parked_deltas() == []
    assert s.get("person", "p-7q2x") == linked
    # 11 had not heard of the link and writes to the old key: it lands in the one record.
    p11.store.receive_deltas([a_create], via="hub-bohai", now_ms=T0 + 2500)
    late = p11.write("r-0b1d", {"children": 2}, now_ms=T0 + 3000)
    assert late.delta.record_id == "r-0b1d" and late.delta.deps == (a_create.id,)
    assert s.receive_deltas([late], via="hub-bohai", now_ms=T0 + 4000).held == 1
    merged = s.get("person", "p-7q2x")
    assert merged is not None and merged.values()["children"] == 2 and set(merged.conflicts()) == {"name"}


def test_a_body_carries_commitments_with_fresh_salts_never_values(p11: Province) -> None:
    values = person("11", "44", seed=5)
    first = p11.write("k1", values, op="create")
    again = p11.write("k1", {"name": values["name"]}, now_ms=T0 + 1000)  # the same value, written again
    for r in (first, again):
        assert str(values["name"]).encode() not in r.envelope.body
        assert str(values["birth_date"]).encode() not in r.envelope.body
    assert first.delta.commitments["name"] != again.delta.commitments["name"]  # random salts
    assert first.delta.salts["name"] != again.delta.salts["name"]


def test_twin_deltas_at_one_sequence_are_both_kept(db_url: str, opened: list[Store], pki: PKI,
                                                   p11: Province) -> None:
    create = p11.write("k1", person("11", "44"), op="create")
    edit = p11.write("k1", {"children": 1}, now_ms=T0 + 1000)
    twin = forged(pki, "province-11", replace(edit.delta, values={"children": 4, "_deleted": False}))
    s = receiver(db_url, opened)
    result = s.receive_deltas([create, edit, twin], via="hub-pearl", now_ms=T0 + 2000)
    assert (result.held, result.quarantined) == (3, 0)
    graph = s.record_graph("person", "k1")
    assert graph.view().equivocating == {"province-11"}
    assert set(s.get("person", "k1").conflicts()) == {"children"}  # type: ignore[union-attr]


def test_a_claim_refused_at_the_household_is_listed_as_refused_at_the_national_hub(
        db_url: str, opened: list[Store], pki: PKI, p11: Province, p44: Province) -> None:
    """Issue 12: a refusal is a signed ``refuse`` delta of the household, so every replica that
    lists the claim lists it refused, and the claimer still receives nothing it did not write."""
    create = p11.write("k1", person("11", "65"), op="create")
    national = receiver(db_url, opened, owner="hub-national")
    national.receive_deltas([create], via="hub-bohai", now_ms=T0 + 500)
    claim = p44.write("k1", person("11", "44"), op="create", now_ms=T0 + 600)  # 44 registers the same person
    for store in (national, p11.store):
        assert store.receive_deltas([claim], via="hub-pearl", now_ms=T0 + 1000).claims == 1
    (listed,) = national.list_claims()
    assert (listed.status, listed.origin) == ("open", "province-44")
    (mine,) = p11.store.list_claims()
    p11.store.refuse_claim(mine.claim_id, operator="operator-11", now_ms=T0 + 2000, seal=pki.sealer("province-11"))
    entry = p11.store.history("person", "k1")[-1]
    refuse = received(pki, entry.envelope)
    assert refuse.delta.op == "refuse" and refuse.delta.accepts == (claim.id,)
    assert "44" not in refuse.delta.routes  # the claimer is not told anything of the record
    national.receive_deltas([refuse], via="hub-bohai", now_ms=T0 + 3000)
    (after,) = national.list_claims()
    assert (after.status, after.decided_by) == ("refused", "province-11")
    assert national.get("person", "k1") == p11.store.get("person", "k1")  # the record itself is unchanged
