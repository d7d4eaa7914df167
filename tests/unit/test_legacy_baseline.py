"""core.baseline and what core.delta / core.graph make of a v2 baseline (issue 10's upgrade).

A baseline is a create marked ``legacy`` in its signed body that carries a record's v1 state,
every writer's fields in it. It is held only from the province the record's household field
names and only as the record's first delta; the state it makes shows the v1 record's values,
and the record is writable on top of it by every province it involves.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import baseline, canonical
from core.delta import Delta, delta_id, parse
from core.errors import Malformed
from core.graph import BASELINE, DUPLICATE, HELD, PARKED, REFUSED, RecordGraph
from core.graphstate import state_of
from core.hlc import Timestamp
from core.kinds import graph_rules
from core.record import RecordState, empty

NOW = 1_800_000_000_000
RULES = graph_rules("person")


def person(household: str, residence: str, name: str = "张三") -> dict[str, object]:
    return {"id_number": f"{household}0101199001011234", "name": name, "household_province": household,
            "residence_province": residence, "birth_date": "1990-01-01", "sex": "F"}


def v1(record_id: str, writes: list[tuple[str, dict[str, object], bool]], concurrent: bool = False) -> RecordState:
    """A v1 record state: each (writer province, values, delete) written on the previous state,
    or, with ``concurrent``, every write after the first made on the first and merged."""
    state = first = empty("person", record_id)
    for i, (p, values, delete) in enumerate(writes):
        at = Timestamp(NOW + i, 0, f"province-{p}")
        if concurrent and i > 0:
            state = state.merge(first.write(values, node=f"province-{p}", at=at, delete=delete))
        else:
            state = state.write(values, node=f"province-{p}", at=at, delete=delete)
            if i == 0:
                first = state
    return state


def write_baseline(state: RecordState, province: str, graph: RecordGraph | None = None) -> tuple[str, Delta, bytes]:
    graph = graph or RecordGraph(state.kind, state.record_id, graph_rules(state.kind))
    return baseline.write(graph, state, origin=f"province-{province}", seq=1,
                          at=Timestamp(NOW + 100, 0, f"province-{province}"), operator=None)


def test_a_baseline_is_marked_legacy_in_its_signed_body_and_other_deltas_are_not() -> None:
    state = v1("k", [("11", person("11", "44"), False)])
    did, delta, body = write_baseline(state, "11")
    assert canonical.loads(body)["legacy"] is True and delta.legacy and delta.op == "create"
    assert parse(body, delta.openings()) == delta and delta_id(body) == did
    g = RecordGraph("person", "k", RULES)
    _, plain, plain_body = g.write(person("11", "44"), origin="province-11", epoch=0, seq=1,
                                   at=Timestamp(NOW, 0, "province-11"), op="create")
    assert "legacy" not in canonical.loads(plain_body) and not parse(plain_body, plain.openings()).legacy


@pytest.mark.parametrize("legacy, op, message", [
    (False, "create", "legacy: must be true when present"),
    (1, "create", "legacy: must be true when present"),
    ("yes", "create", "legacy: must be true when present"),
    (True, "update", "legacy: only a create can be a baseline"),
])
def test_parse_keeps_the_legacy_mark_strict(legacy: object, op: str, message: str) -> None:
    state = v1("k", [("11", person("11", "44"), False)])
    _, delta, body = write_baseline(state, "11")
    obj = canonical.loads(body)
    obj["legacy"] = legacy
    obj["op"] = op
    if op != "create":
        obj["deps"] = ["0" * 64]
    with pytest.raises(Malformed, match=message):
        parse(canonical.dumps(obj), delta.openings())


def test_the_baseline_carries_every_writers_fields_and_reads_stay_equal() -> None:
    state = v1("k", [("11", person("11", "44"), False), ("44", {"name": "张叁", "children": 2}, False)])
    did, delta, _ = write_baseline(state, "11")
    assert delta.values == {**baseline.values(state)} and delta.values["_deleted"] is False
    assert delta.routes == frozenset({"11", "44"})
    receiver = RecordGraph("person", "k", RULES)  # the residence province, say
    assert receiver.receive(did, delta, author="province-11", now_ms=NOW + 200).outcome == HELD
    assert state_of(receiver).values() == state.values()
    # Writable after it, by every province the record involves, on top of the baseline.
    later, edit, _ = receiver.write({"children": 3}, origin="province-44", epoch=0, seq=7,
                                    at=Timestamp(NOW + 300, 0, "province-44"))
    assert edit.deps == (did,) and state_of(receiver).values()["children"] == 3


def test_a_deleted_record_stays_deleted() -> None:
    state = v1("k", [("11", person("11", "11"), False), ("11", {}, True)])
    assert state.deleted
    _, delta, _ = write_baseline(state, "11")
    assert delta.values["_deleted"] is True
    g = RecordGraph("person", "k", RULES)
    g.receive(delta_id(delta.to_body()), delta, author="province-11", now_ms=NOW + 200)
    assert state_of(g).deleted and state_of(g).values() == state.values()


def test_only_the_household_province_signs_a_baseline() -> None:
    state = v1("k", [("11", person("11", "44"), False)])
    assert baseline.decide(state, RULES, "11") == baseline.WRITE
    assert baseline.decide(state, RULES, "44") == baseline.ELSEWHERE  # involved, yet not the household
    forged = Delta("person", "k", "province-44", 0, 1, Timestamp(NOW, 0, "province-44"), "create", None, (), (),
                   baseline.values(state), frozenset({"11", "44"}), {}, legacy=True)
    g = RecordGraph("person", "k", RULES)
    d = g.receive(delta_id(forged.to_body()), forged, author="province-44", now_ms=NOW)
    assert d.outcome == REFUSED and d.reason.startswith("legacy: a baseline is signed by the province its "
                                                        "household_province names, not province-44")
    with pytest.raises(ValueError, match="legacy"):
        write_baseline(state, "44")


def test_a_baseline_is_held_only_as_the_first_delta_of_its_record() -> None:
    state = v1("k", [("11", person("11", "44"), False)])
    did, delta, _ = write_baseline(state, "11")
    g = RecordGraph("person", "k", RULES)
    assert g.receive(did, delta, author="province-11", now_ms=NOW + 200).outcome == HELD
    assert g.receive(did, delta, author="province-11", now_ms=NOW + 200).outcome == DUPLICATE  # identical
    other = Delta("person", "k", "province-11", 0, 2, Timestamp(NOW + 5, 0, "province-11"), "create", None, (), (),
                  {**baseline.values(state), "children": 4}, frozenset({"11", "44"}), {}, legacy=True)
    d = g.receive(delta_id(other.to_body()), other, author="province-11", now_ms=NOW + 200)
    assert d.outcome == REFUSED and "must be the first delta of person k" in d.reason
    assert state_of(g).values() == state.values()
    # A record that has ordinary deltas takes no baseline either, and core.baseline says so first.
    fresh = RecordGraph("person", "k", RULES)
    fresh.write(person("11", "44"), origin="province-11", epoch=0, seq=1, at=Timestamp(NOW, 0, "province-11"),
                op="create")
    with pytest.raises(ValueError, match="already has v2 deltas"):
        write_baseline(state, "11", fresh)
    d = fresh.receive(did, delta, author="province-11", now_ms=NOW + 200)
    assert d.outcome == REFUSED and d.reason.startswith("legacy: a baseline must be the first delta")


def test_a_record_with_an_open_conflict_waits_for_its_settlement() -> None:
    state = v1("k", [("11", person("11", "44"), False), ("11", {"name": "张三丰"}, False),
                     ("44", {"name": "张叁"}, False)], concurrent=True)
    assert "name" in state.conflicts()
    assert baseline.decide(state, RULES, "11") == baseline.CONFLICTED


def test_a_request_baseline_is_the_senders_and_carries_the_receivers_answer() -> None:
    rules = graph_rules("request")
    values = {"from_province": "11", "to_province": "44", "to_side": "residence", "subject": "s", "body": "b",
              "sent_on": "2026-01-01", "state": "answered", "answer": "a", "answered_on": "2026-01-02"}
    state = empty("request", "q1").write(values, node="province-11", at=Timestamp(NOW, 0, "province-11"))
    assert baseline.author(state, rules) == "11" and baseline.decide(state, rules, "44") == baseline.ELSEWHERE
    did, delta, _ = write_baseline(state, "11")
    g = RecordGraph("request", "q1", rules)
    assert g.receive(did, delta, author="province-11", now_ms=NOW + 200).outcome == HELD
    assert state_of(g).values() == state.values()


NAMES = st.sampled_from(["张三", "张叁", "李四", None])
WRITES = st.lists(st.tuples(st.sampled_from(["11", "44"]),
                            st.fixed_dictionaries({}, optional={"name": NAMES, "children": st.integers(0, 3),
                                                                "residence_province": st.sampled_from(["44", "65"])}),
                            st.booleans()), max_size=6)


@settings(max_examples=60, deadline=None)
@given(WRITES, st.booleans())
def test_any_v1_state_without_conflicts_reads_the_same_from_its_baseline(writes: list, concurrent: bool) -> None:
    state = v1("k", [("11", person("11", "44"), False)] + writes, concurrent=concurrent)
    verdict = baseline.decide(state, RULES, "11")
    assert verdict == (baseline.CONFLICTED if state.conflicts() else baseline.WRITE)
    if verdict != baseline.WRITE:
        return
    did, delta, body = write_baseline(state, "11")
    replica = RecordGraph("person", "k", RULES)
    assert replica.receive(did, parse(body, delta.openings()), author="province-11", now_ms=NOW).outcome == HELD
    after = state_of(replica)
    assert (after.values(), after.deleted, after.conflicts()) == (state.values(), state.deleted, {})


def test_on_a_record_held_with_v1_history_nothing_is_held_before_its_baseline() -> None:
    state = v1("k", [("11", person("11", "44"), False)])
    did, delta, _ = write_baseline(state, "11")
    g = RecordGraph("person", "k", RULES)
    g.legacy = True  # what the store's loader says of a record whose log holds v1 changes
    racing = RecordGraph("person", "k", RULES)  # a province that never held it registers it meanwhile
    rid, claim, _ = racing.write(person("11", "65", "李四"), origin="province-65", epoch=0, seq=1,
                                 at=Timestamp(NOW, 0, "province-65"), op="create")
    early = g.receive(rid, claim, author="province-65", now_ms=NOW + 200)
    assert early.outcome == PARKED and early.waiting_for == frozenset({BASELINE}) and not g.held
    arrived = g.receive(did, delta, author="province-11", now_ms=NOW + 300)
    assert arrived.outcome == HELD and arrived.released == (rid,)
    assert state_of(g).values() == state.values() and g.view().claims == frozenset({rid})
