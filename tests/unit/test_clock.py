"""Vector clocks: exhaustive small cases for compare and merge, and the wire form."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import Order, VectorClock
from core.errors import Malformed

NODES = ("province-11", "province-31", "province-44")

# Every clock over 3 nodes with counts 0..2: 27 clocks, 729 pairs.
ALL = [VectorClock.of(dict(zip(NODES, counts))) for counts in itertools.product(range(3), repeat=3)]
PAIRS = list(itertools.product(ALL, ALL))


def _vec(c: VectorClock) -> tuple[int, ...]:
    return tuple(c.get(n) for n in NODES)


def _expected_order(a: VectorClock, b: VectorClock) -> Order:
    """Reference comparison, written independently of VectorClock.compare."""
    va, vb = _vec(a), _vec(b)
    le = all(x <= y for x, y in zip(va, vb))
    ge = all(x >= y for x, y in zip(va, vb))
    if le and ge:
        return Order.EQUAL
    if le:
        return Order.BEFORE
    if ge:
        return Order.AFTER
    return Order.CONCURRENT


_FLIP = {
    Order.EQUAL: Order.EQUAL,
    Order.BEFORE: Order.AFTER,
    Order.AFTER: Order.BEFORE,
    Order.CONCURRENT: Order.CONCURRENT,
}


def test_universe_is_27_distinct_clocks() -> None:
    assert len(ALL) == 27
    assert len(set(ALL)) == 27
    assert len(PAIRS) == 729


def test_compare_matches_reference_on_all_pairs() -> None:
    counts = {o: 0 for o in Order}
    for a, b in PAIRS:
        got = a.compare(b)
        assert got is _expected_order(a, b), (a, b)
        counts[got] += 1
    # Every outcome actually occurs in the universe (the test can tell them apart).
    assert counts[Order.EQUAL] == 27
    assert counts[Order.BEFORE] == counts[Order.AFTER] > 0
    assert counts[Order.CONCURRENT] > 0


def test_compare_is_consistent_and_antisymmetric() -> None:
    for a, b in PAIRS:
        ab, ba = a.compare(b), b.compare(a)
        assert ba is _FLIP[ab]
        assert (ab is Order.BEFORE) == (ba is Order.AFTER)
        assert (ab is Order.EQUAL) == (a == b) == (a.entries == b.entries)
        # antisymmetry: a <= b and b <= a only when equal
        if ab in (Order.BEFORE, Order.EQUAL) and ba in (Order.BEFORE, Order.EQUAL):
            assert a == b
        assert (a < b) == (ab is Order.BEFORE)
        assert not (a < b and b < a)


def test_before_is_transitive() -> None:
    for a, b in PAIRS:
        if a.compare(b) is not Order.BEFORE:
            continue
        for c in ALL:
            if b.compare(c) is Order.BEFORE:
                assert a.compare(c) is Order.BEFORE


def test_merge_is_pointwise_max_commutative_idempotent_and_an_upper_bound() -> None:
    for a, b in PAIRS:
        m = a.merge(b)
        assert _vec(m) == tuple(max(x, y) for x, y in zip(_vec(a), _vec(b)))
        assert m == b.merge(a)
        assert m.entries == b.merge(a).entries
        assert a.merge(a) == a
        assert m.merge(a) == m
        assert a.compare(m) in (Order.BEFORE, Order.EQUAL)
        assert m.compare(a) in (Order.AFTER, Order.EQUAL)
        assert m.compare(b) in (Order.AFTER, Order.EQUAL)
        # least upper bound: any clock after-or-equal to both is after-or-equal to the merge
        for c in ALL:
            if a.compare(c) in (Order.BEFORE, Order.EQUAL) and b.compare(c) in (Order.BEFORE, Order.EQUAL):
                assert m.compare(c) in (Order.BEFORE, Order.EQUAL)
        # concurrent clocks merge into something strictly after both
        if a.compare(b) is Order.CONCURRENT:
            assert m.compare(a) is Order.AFTER and m.compare(b) is Order.AFTER


def test_merge_is_associative_on_all_triples() -> None:
    for a, b, c in itertools.product(ALL, repeat=3):  # 19683 triples
        assert a.merge(b).merge(c) == a.merge(b.merge(c))


def test_increment_is_strictly_after_and_only_touches_one_node() -> None:
    for a in ALL:
        for n in NODES:
            inc = a.increment(n)
            assert inc.compare(a) is Order.AFTER
            assert inc.get(n) == a.get(n) + 1
            for other in NODES:
                if other != n:
                    assert inc.get(other) == a.get(other)
    # Increments by different nodes from the same clock are concurrent.
    base = VectorClock.of({"province-11": 1})
    assert base.increment("province-31").compare(base.increment("province-44")) is Order.CONCURRENT


def test_empty_clock() -> None:
    empty = VectorClock()
    assert empty == VectorClock.of({}) == VectorClock.of({"province-11": 0})
    assert empty.to_json() == {}
    assert empty.get("province-11") == 0
    assert empty.compare(VectorClock.of({"province-11": 1})) is Order.BEFORE


# -- serialisation -----------------------------------------------------------


def test_canonical_form_drops_zeros_and_sorts() -> None:
    a = VectorClock.of({"province-44": 2, "province-11": 0, "province-31": 1})
    b = VectorClock.of([("province-31", 1), ("province-44", 2)])
    assert a == b
    assert a.entries == (("province-31", 1), ("province-44", 2))
    assert list(a.to_json()) == ["province-31", "province-44"]
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())


def test_to_json_round_trips_every_small_clock() -> None:
    for c in ALL:
        j = c.to_json()
        assert list(j) == sorted(j)
        assert all(v > 0 for v in j.values())
        assert VectorClock.from_json(j) == c
        assert VectorClock.from_json(json.loads(json.dumps(j))) == c


@given(st.dictionaries(st.sampled_from(["a", "b", "province-11", "hub-pearl", "z"]), st.integers(0, 10**12)))
@settings(max_examples=200, deadline=None)
def test_from_json_is_insertion_order_independent(d: dict[str, int]) -> None:
    reversed_d = dict(reversed(list(d.items())))
    a, b = VectorClock.from_json(d), VectorClock.from_json(reversed_d)
    assert a == b
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())
    assert a.to_json() == {k: v for k, v in sorted(d.items()) if v}
    assert VectorClock.from_json(a.to_json()) == a


@pytest.mark.parametrize(
    "bad",
    [
        {"province-11": -1},
        {"province-11": True},
        {"province-11": False},
        {"province-11": 1.0},
        {"province-11": 1.5},
        {"province-11": "1"},
        {"province-11": None},
        {"province-11": [1]},
        {"province-11": 2**63},
        {"province-11": 10**4300 - 1},  # once accepted, it froze the record (issue 10, finding 2)
        {"": 1},
        [["province-11", 1]],
        [],
        "province-11",
        None,
        1,
    ],
)
def test_from_json_rejects(bad: object) -> None:
    with pytest.raises(Malformed, match="clock"):
        VectorClock.from_json(bad)


def test_increment_at_the_bound_refuses_instead_of_overflowing() -> None:
    top = VectorClock.of({"province-11": 2**63 - 1})
    with pytest.raises(Malformed, match="2\\*\\*63"):
        top.increment("province-11")
    assert top.increment("province-44").get("province-44") == 1
