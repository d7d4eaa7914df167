"""Record state: per-field multi-value registers, conflicts, settling, tombstones."""

from __future__ import annotations

import itertools
import json

import pytest

from core import canonical
from core.clock import Order, VectorClock
from core.errors import Malformed
from core.hlc import Timestamp
from core.record import DELETED, RecordState, Version, empty

A, B, C = "province-11", "province-31", "province-44"
KIND, RID = "person", "r1"


def ts(wall: int, node: str, logical: int = 0) -> Timestamp:
    return Timestamp(wall, logical, node)


def base() -> RecordState:
    """A record created by A and known to everybody."""
    return empty(KIND, RID).write({"name": "张三", "children": 0, "residence_province": "11"}, node=A, at=ts(100, A))


def same(*states: RecordState) -> None:
    first = states[0]
    for s in states[1:]:
        assert s == first
        assert s.to_bytes() == first.to_bytes()
        assert s.values() == first.values()
        assert s.conflicts() == first.conflicts()
        assert s.deleted == first.deleted


# -- writes --------------------------------------------------------------------


def test_write_stamps_fields_and_deleted_with_one_dominating_version() -> None:
    s = base()
    assert s.values() == {"children": 0, "name": "张三", "residence_province": "11"}
    assert not s.deleted
    assert s.conflicts() == {}
    assert s.clock == VectorClock.of({A: 1})
    for name in ("name", "children", "residence_province", DELETED):
        (v,) = s.fields[name]
        assert v.clock == VectorClock.of({A: 1})
        assert v.at == ts(100, A)
    s2 = s.write({"children": 1}, node=A, at=ts(200, A))
    assert s2.clock == VectorClock.of({A: 2})
    assert s2.values()["children"] == 1
    assert s2.fields["name"] == s.fields["name"]  # untouched field keeps its version
    assert s2.fields["children"][0].clock.compare(s.fields["children"][0].clock) is Order.AFTER


def test_deleted_is_reserved() -> None:
    with pytest.raises(ValueError):
        base().write({DELETED: True}, node=A, at=ts(200, A))


def test_merge_refuses_other_records() -> None:
    with pytest.raises(ValueError):
        base().merge(empty(KIND, "other"))
    with pytest.raises(ValueError):
        base().merge(empty("other-kind", RID))


# -- concurrency ---------------------------------------------------------------


def test_concurrent_writes_to_different_fields_both_survive() -> None:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(200, A))
    b = s.write({"children": 2}, node=B, at=ts(150, B))
    ab, ba = a.merge(b), b.merge(a)
    same(ab, ba)
    assert ab.values() == {"name": "李四", "children": 2, "residence_province": "11"}
    assert ab.conflicts() == {}
    assert not ab.deleted
    # _deleted was written false by both: two concurrent versions, same value, no conflict
    assert len(ab.fields[DELETED]) == 2
    assert ab.clock == VectorClock.of({A: 2, B: 1})


def test_concurrent_writes_to_same_field_conflict_and_winner_by_rule() -> None:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(200, A))
    b = s.write({"name": "王五"}, node=B, at=ts(300, B))  # later HLC wins
    c = s.write({"name": "赵六"}, node=C, at=ts(250, C))
    merged = [x.merge(y).merge(z) for x, y, z in itertools.permutations([a, b, c])]
    same(*merged)
    m = merged[0]
    assert m.values()["name"] == "王五"
    conflicts = m.conflicts()
    assert list(conflicts) == ["name"]
    assert [v.value for v in conflicts["name"]] == ["王五", "赵六", "李四"]  # winner first, then by rank
    assert {v.clock for v in conflicts["name"]} == {a.clock, b.clock, c.clock}
    assert m.winner("name").at == ts(300, B)


@pytest.mark.parametrize(
    "at_a, at_b, winner",
    [
        (ts(200, A), ts(100, B), "李四"),  # wall_ms first
        (ts(200, A, 1), ts(200, B, 0), "李四"),  # then logical
        (ts(200, A, 3), ts(200, B, 3), "王五"),  # then node id ("province-31" > "province-11")
    ],
)
def test_winner_rule_order_of_keys(at_a: Timestamp, at_b: Timestamp, winner: str) -> None:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=at_a)
    b = s.write({"name": "王五"}, node=B, at=at_b)
    assert a.merge(b).values()["name"] == winner
    assert b.merge(a).values()["name"] == winner


def test_winner_rule_last_key_is_canonical_value_bytes() -> None:
    # Same (wall, logical, node) on two concurrent versions cannot come from one
    # honest node, but the rule must still be total: value bytes decide.
    at = ts(500, C)
    x = RecordState(KIND, RID, {"name": (Version("甲", VectorClock.of({A: 1}), at),)})
    y = RecordState(KIND, RID, {"name": (Version("乙", VectorClock.of({B: 1}), at),)})
    expected = max(["甲", "乙"], key=canonical.dumps)
    assert x.merge(y).values()["name"] == expected == y.merge(x).values()["name"]
    assert x.merge(y).to_bytes() == y.merge(x).to_bytes()


def test_concurrent_equal_values_are_not_a_conflict() -> None:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(200, A))
    b = s.write({"name": "李四"}, node=B, at=ts(300, B))
    m = a.merge(b)
    assert m.conflicts() == {}
    assert m.values()["name"] == "李四"
    assert len(m.fields["name"]) == 2


def test_causally_later_write_wins_even_with_an_older_timestamp() -> None:
    """A node whose wall clock is hours behind cannot lose to what it has already seen."""
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(10_000_000, A))  # A's clock is far ahead
    b = s.merge(a).write({"name": "王五"}, node=B, at=ts(200, B))  # B saw A, clock far behind
    for m in (a.merge(b), b.merge(a), b):
        assert m.values()["name"] == "王五"
        assert m.conflicts() == {}
        assert [v.value for v in m.fields["name"]] == ["王五"]


def test_settle_clears_the_conflict_on_every_replica() -> None:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(200, A))
    b = s.write({"name": "王五"}, node=B, at=ts(300, B))
    c = s  # C has not seen either yet
    a_view = a.merge(b)
    assert "name" in a_view.conflicts()
    settled = a_view.write({"name": "李四"}, node=A, at=ts(400, A))  # the operator keeps the loser
    (v,) = settled.fields["name"]
    for old in a_view.fields["name"]:
        assert v.clock.compare(old.clock) is Order.AFTER
    assert settled.conflicts() == {}
    # Every other replica, in whatever order it hears things, ends the same.
    b_view = b.merge(settled)
    c_view = c.merge(b).merge(a).merge(settled).merge(a)
    same(settled, b_view, c_view)
    assert b_view.values()["name"] == "李四"
    assert b_view.conflicts() == {}


def test_settle_by_a_node_that_saw_only_one_side_does_not_clear() -> None:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(200, A))
    b = s.write({"name": "王五"}, node=B, at=ts(300, B))
    c = s.merge(a).write({"name": "赵六"}, node=C, at=ts(400, C))  # C never saw b
    m = c.merge(b).merge(a)
    assert [v.value for v in m.conflicts()["name"]] == ["赵六", "王五"]


# -- deletes -------------------------------------------------------------------


def test_delete_is_a_tombstone_that_keeps_fields() -> None:
    d = base().write({}, node=A, at=ts(200, A), delete=True)
    assert d.deleted
    assert d.values() == base().values()  # nothing lost
    assert DELETED not in d.values()
    assert d.conflicts() == {}


def test_delete_concurrent_with_update_conflicts_on_deleted() -> None:
    s = base()
    d = s.write({}, node=A, at=ts(300, A), delete=True)
    u = s.write({"children": 3}, node=B, at=ts(200, B))
    m = d.merge(u)
    same(m, u.merge(d))
    assert list(m.conflicts()) == [DELETED]
    assert [v.value for v in m.conflicts()[DELETED]] == [True, False]
    assert m.deleted  # the delete has the later timestamp
    assert m.values()["children"] == 3  # the update's field survives
    # the other way round: update wins the tie, still a conflict
    d2 = s.write({}, node=A, at=ts(100, A), delete=True)
    m2 = d2.merge(u)
    assert not m2.deleted
    assert [v.value for v in m2.conflicts()[DELETED]] == [False, True]
    # settling by deleting again, having seen both, clears it
    settled = m.write({}, node=C, at=ts(50, C), delete=True)
    assert settled.deleted and settled.conflicts() == {}
    same(settled, d.merge(settled), u.merge(settled))


def test_update_after_seeing_the_delete_revives_without_conflict() -> None:
    s = base()
    d = s.write({}, node=A, at=ts(300, A), delete=True)
    revived = s.merge(d).write({"name": "王五"}, node=B, at=ts(100, B))
    for m in (revived, d.merge(revived), revived.merge(d)):
        assert not m.deleted
        assert m.conflicts() == {}
        assert m.values()["name"] == "王五"


def test_delete_after_seeing_an_update_is_clean() -> None:
    s = base()
    u = s.write({"children": 2}, node=B, at=ts(300, B))
    d = u.write({}, node=A, at=ts(100, A), delete=True)
    for m in (d, u.merge(d), d.merge(u).merge(s)):
        assert m.deleted and m.conflicts() == {}


# -- serialisation ------------------------------------------------------------


def _sample_states() -> list[RecordState]:
    s = base()
    a = s.write({"name": "李四"}, node=A, at=ts(200, A))
    b = s.write({"name": "王五", "children": 1}, node=B, at=ts(300, B))
    d = s.write({}, node=C, at=ts(250, C), delete=True)
    return [empty(KIND, RID), s, a, a.merge(b), a.merge(b).merge(d)]


def test_json_round_trip_is_exact() -> None:
    for s in _sample_states():
        back = RecordState.from_json(KIND, RID, json.loads(s.to_bytes()))
        assert back == s
        assert back.to_bytes() == s.to_bytes()
        assert back.conflicts() == s.conflicts()
        assert back.values() == s.values()
        assert s.to_bytes() == canonical.dumps(s.to_json())


def test_from_json_normalises_order_and_drops_dominated_versions() -> None:
    s = _sample_states()[-1]
    obj = s.to_json()
    shuffled = {"stamps": obj["stamps"],
                "fields": {k: list(reversed(vs)) for k, vs in reversed(list(obj["fields"].items()))}}
    assert RecordState.from_json(KIND, RID, shuffled).to_bytes() == s.to_bytes()
    # A version whose clock is empty is before everything: it is dropped on load.
    padded = {"stamps": obj["stamps"] + [[{}, ts(1, A).to_json()]], "fields": dict(obj["fields"])}
    padded["fields"]["name"] = obj["fields"]["name"] + [["旧", len(obj["stamps"])]]
    assert RecordState.from_json(KIND, RID, padded) == s


STAMP = [{"n": 1}, [1, 0, "n"]]


@pytest.mark.parametrize(
    "bad, where",
    [
        ([], "state"),
        ({"fields": {}}, "state"),
        ({"stamps": [], "fields": {}, "x": 1}, "state"),
        ({"stamps": [STAMP], "fields": {"name": []}}, "state.fields.name"),
        ({"stamps": [STAMP], "fields": {"name": {}}}, "state.fields.name"),
        ({"stamps": [STAMP], "fields": {"name": [[1]]}}, "state.fields.name"),
        ({"stamps": [STAMP], "fields": {"name": [[1, 1]]}}, "state.fields.name"),
        ({"stamps": [[{"n": -1}, [1, 0, "n"]]], "fields": {}}, "state.stamps[0]"),
        ({"stamps": [[{"n": 1}, [1, 0]]], "fields": {}}, "state.stamps[0]"),
    ],
)
def test_from_json_rejects(bad: object, where: str) -> None:
    with pytest.raises(Malformed) as exc:
        RecordState.from_json(KIND, RID, bad)
    assert str(exc.value).startswith(where)


# -- exhaustive small merge cases ----------------------------------------------

# A pool of (field, version) pairs with every relation in it: dominated,
# concurrent with different values, concurrent with equal values.
_POOL = [
    ("name", Version("张三", VectorClock.of({A: 1}), ts(100, A))),
    ("name", Version("李四", VectorClock.of({A: 1, B: 1}), ts(110, B))),  # after the first
    ("name", Version("王五", VectorClock.of({C: 1}), ts(90, C))),  # concurrent with both
    ("name", Version("李四", VectorClock.of({A: 2}), ts(120, A))),  # concurrent, same value as #2
    ("children", Version(1, VectorClock.of({A: 1}), ts(100, A))),
    ("children", Version(2, VectorClock.of({A: 1, B: 1, C: 1}), ts(80, C))),  # after children#1
    (DELETED, Version(True, VectorClock.of({B: 1}), ts(100, B))),
    (DELETED, Version(False, VectorClock.of({C: 1}), ts(90, C))),
]


def _state(items) -> RecordState:
    out = empty(KIND, RID)
    for name, v in items:
        out = out.merge(RecordState(KIND, RID, {name: (v,)}))
    return out


def _reference(items) -> dict[str, list[Version]]:
    """Maximal versions per field, computed naively."""
    out: dict[str, list[Version]] = {}
    for name, _ in items:
        out.setdefault(name, [])
    for name in out:
        vs = [v for n, v in items if n == name]
        out[name] = [v for v in vs if not any(v.clock.compare(w.clock) is Order.BEFORE for w in vs)]
    return out


SUBSETS = [_state(c) for r in range(len(_POOL) + 1) for c in itertools.combinations(_POOL, r)]
SUBSET_ITEMS = [c for r in range(len(_POOL) + 1) for c in itertools.combinations(_POOL, r)]


def test_every_subset_merges_to_its_maximal_versions_in_every_order() -> None:
    assert len(SUBSETS) == 256
    for items, state in zip(SUBSET_ITEMS, SUBSETS):
        ref = _reference(items)
        assert set(state.fields) == set(ref)
        for name, vs in ref.items():
            assert set(state.fields[name]) == set(vs)
            assert state.fields[name][0].rank() == max(v.rank() for v in vs)  # winner by rule
        if len(items) <= 5:
            for perm in itertools.permutations(items):
                assert _state(perm).to_bytes() == state.to_bytes()


def _subsets(pool) -> list[RecordState]:
    return [_state(c) for r in range(len(pool) + 1) for c in itertools.combinations(pool, r)]


# Smaller pools (still covering dominated, concurrent, equal-value and _deleted
# conflicts) so that all pairs and all triples stay fast.
PAIR_POOL = [_POOL[i] for i in (0, 1, 2, 3, 6, 7)]  # 64 states, 4096 pairs
TRIPLE_POOL = [_POOL[i] for i in (0, 1, 2, 3, 6)]  # 32 states, 32768 triples


def test_merge_is_commutative_and_idempotent_on_all_subset_pairs() -> None:
    states = _subsets(PAIR_POOL)
    assert len(states) == 64
    for x in states:
        assert x.merge(x) == x
        for y in states:
            xy, yx = x.merge(y), y.merge(x)
            assert xy == yx
            assert xy.to_bytes() == yx.to_bytes()
            assert xy.merge(y) == xy  # idempotent: duplicates change nothing
            assert xy.merge(x) == xy


def test_merge_is_associative_on_all_subset_triples() -> None:
    states = _subsets(TRIPLE_POOL)
    assert len(states) == 32
    for x, y, z in itertools.product(states, repeat=3):
        assert x.merge(y).merge(z) == x.merge(y.merge(z))
