"""core.graph aliases: ``person link`` takes a record with a random key into the ID-keyed one.

An alias is a delta on the target that names the records it takes in and depends on their
heads. Its author must be involved in both, judged on the history like any write. Once it
counts, the merged record keeps every version of both (differing values stay an open
conflict), involves the provinces of both, and converges whatever order the deltas arrive in,
including writes to the taken-in record by a province that had not heard of the link yet.
"""

from __future__ import annotations

import itertools

import pytest

from core.delta import Delta, delta_id, parse
from core.errors import Malformed
from core.graph import HELD, PARKED, REFUSED, RecordGraph
from core.hlc import Timestamp
from tests.unit.test_graph import NOW, RULES, origin

A, B = "r-0b1d", "p-7q2x"


def at(p: str, n: int) -> Timestamp:
    return Timestamp(NOW + n, 0, origin(p))


def graph(record: str = B, related: tuple[str, ...] = (A,)) -> RecordGraph:
    g = RecordGraph("person", record, RULES)
    g.related.update(related)
    return g


def history(residence_of_a: str = "65") -> tuple[list[tuple[str, Delta]], RecordGraph]:
    """65 registers a newborn without an ID (A); 11 registers the person by ID (B); 65 links them."""
    ga, gb = graph(A, ()), graph()
    pool = []
    a_author = residence_of_a
    did, d, _ = ga.write({"name": "张三", "household_province": "11", "residence_province": residence_of_a,
                          "children": 1}, origin=origin(a_author), epoch=0, seq=1, at=at(a_author, 1), op="create")
    pool.append((did, d))
    did, d, _ = gb.write({"id_number": "110101202001011234", "name": "张叁", "household_province": "11",
                          "residence_province": "65"}, origin=origin("11"), epoch=0, seq=1, at=at("11", 2), op="create")
    pool.append((did, d))
    return pool, gb


def deliver(g: RecordGraph, pool: list[tuple[str, Delta]]) -> list[str]:
    return [g.receive(did, d, author=d.origin, now_ms=NOW).outcome for did, d in pool]


def test_a_link_keeps_every_version_and_involves_both_records_provinces() -> None:
    pool, gb = history()
    assert deliver(gb, pool[:1]) == [HELD]  # 65's replica of B holds A's history too
    linker = graph()
    deliver(linker, pool)
    alias_id, alias, _ = linker.write({}, origin=origin("65"), epoch=0, seq=2, at=at("65", 3), op="alias", merges=(A,))
    assert alias.merges == (A,) and set(alias.deps) == {pool[0][0], pool[1][0]}
    view = linker.view()
    assert {v.value for v in view.fields["name"]} == {"张三", "张叁"}  # an open conflict, both kept
    assert view.fields["children"][0].value == 1 and view.values()["id_number"] == "110101202001011234"
    assert view.involved == {"11", "65"} and alias.routes == frozenset({"11", "65"})
    assert {pool[0][0], pool[1][0], alias_id} <= view.counted
    # Every order of arrival gives the same record (the alias parks until what it takes in arrives).
    everything = pool + [(alias_id, alias)]
    for order in itertools.permutations(everything):
        g = graph()
        outcomes = deliver(g, list(order))
        if order[0][0] == alias_id:
            assert outcomes[0] == PARKED
        assert g.view() == view


def test_a_write_to_the_old_record_by_a_province_that_had_not_heard_counts_as_concurrent() -> None:
    pool, _ = history()
    a_replica = graph(A, ())
    deliver(a_replica, pool[:1])
    late_id, late, _ = a_replica.write({"children": 2}, origin=origin("11"), epoch=0, seq=5, at=at("11", 9))
    linker = graph()
    deliver(linker, pool)
    alias_id, alias, _ = linker.write({}, origin=origin("65"), epoch=0, seq=2, at=at("65", 3), op="alias", merges=(A,))
    for order in (pool + [(alias_id, alias), (late_id, late)], [(late_id, late), (alias_id, alias)] + pool):
        g = graph()
        deliver(g, order)
        assert late_id in g.view().counted and g.view().values()["children"] == 2


@pytest.mark.parametrize("author, residence_of_a, why", [
    ("44", "65", "not involved in the record"),  # involved in neither
    ("65", "31", "not involved in r-0b1d"),  # involved in B only: A is 31's
])
def test_a_link_by_a_province_not_involved_in_both_is_refused(author: str, residence_of_a: str, why: str) -> None:
    pool, _ = history(residence_of_a)
    g = graph()
    deliver(g, pool)
    forged = Delta("person", B, origin(author), 0, 9, at(author, 5), "alias", None,
                   tuple(sorted(did for did, _ in pool)), (), {}, frozenset({"11", "65", author}), {}, (A,))
    decision = g.receive(delta_id(forged.to_body()), forged, author=origin(author), now_ms=NOW)
    assert decision.outcome == REFUSED and why in decision.reason, decision
    assert pool[0][0] not in g.view().counted  # A's history stays apart


def test_a_delta_on_the_taken_in_record_may_not_depend_on_the_target() -> None:
    pool, _ = history()
    g = graph()
    deliver(g, pool)
    sneaky = Delta("person", A, origin("65"), 0, 7, at("65", 6), "update", None, (pool[1][0],), (),
                   {"name": "混", "_deleted": False}, frozenset({"11", "65"}), {})
    decision = g.receive(delta_id(sneaky.to_body()), sneaky, author=origin("65"), now_ms=NOW)
    assert decision.outcome == REFUSED and decision.reason.startswith("deps:")


def test_a_delta_for_an_unrelated_record_is_refused() -> None:
    pool, _ = history()
    g = graph(related=())
    assert deliver(g, pool[:1]) == [REFUSED]


@pytest.mark.parametrize("change, message", [
    (lambda o: o | {"op": "alias", "merges": []}, "merges: names the records an alias takes in"),
    (lambda o: o | {"merges": ["r-1"]}, "merges: names the records an alias takes in"),
    (lambda o: o | {"op": "alias", "merges": ["r-2", "r-1"]}, "merges: must be sorted"),
    (lambda o: o | {"op": "alias", "merges": [o["id"]]}, "merges: must be sorted, without repeats, and not name"),
    (lambda o: {k: v for k, v in o.items() if k != "merges"}, "merges: must be a list"),
])
def test_parse_checks_merges(change, message) -> None:  # type: ignore[no-untyped-def]
    import json

    pool, _ = history()
    _, update = pool[1]
    update = Delta(update.kind, update.record_id, update.origin, 0, 3, update.at, "update", None, (pool[1][0],), (),
                   {"name": "x", "_deleted": False}, update.routes, {})
    obj = change(json.loads(update.to_body()))
    with pytest.raises(Malformed) as err:
        parse(json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(), update.openings())
    assert str(err.value).startswith(message), err.value
