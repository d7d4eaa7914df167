"""The v2 upgrade in the store (``Store.baseline_v2``, core.baseline), on SQLite and PostgreSQL.

A record with v1 history is readable before its baseline, and readable (with equal values)
and writable (``Store.write_delta``) after it, at its household province, which signs the
baseline, and at the other province it involves, which receives it. Re-running writes nothing.
Each baseline is signed with the household's real key and verified before a receiver takes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core import canonical
from core.change import Envelope
from core.errors import LocalError
from store.store import Store
from tests.contract.test_deltas import T0, person, received
from tests.support import legacy
from tests.support.pki import PKI


def opened_store(url: str, owner: str, opened: list[Store]) -> Store:
    s = Store.open(url, owner=owner)
    opened.append(s)
    return s


def shown(store: Store, record_id: str) -> tuple[dict, bool, list]:
    state = store.require("person", record_id)
    return state.values(), state.deleted, sorted(state.conflicts())


def baseline_envelope(store: Store, record_id: str) -> Envelope:
    (entry,) = [e for e in store.history("person", record_id) if canonical.loads(e.body).get("legacy") is True]
    graph = store.record_graph("person", record_id)
    (delta,) = [d for d in graph.held.values() if d.legacy]
    return Envelope(entry.body, entry.seal, delta.openings())


def test_the_household_signs_one_baseline_per_record_and_reads_stay_equal(db_url: str, pki: PKI, tmp_path: Path,
                                                                          opened: list[Store]) -> None:
    p11 = opened_store(db_url, "province-11", opened)
    p44 = opened_store(f"sqlite:///{tmp_path / '44.db'}", "province-44", opened)
    moved, env = legacy.write(p11, pki, "a", person("11", "44", seed=1), now_ms=T0)
    legacy.deliver(p44, moved, env, now_ms=T0 + 10)
    edit, env = legacy.write(p44, pki, "a", {"children": 2, "name": "张叁"}, now_ms=T0 + 20)  # the residence's
    legacy.deliver(p11, edit, env, now_ms=T0 + 30)
    theirs, env = legacy.write(p44, pki, "b", person("44", "11", seed=2), now_ms=T0 + 40)  # household 44
    legacy.deliver(p11, theirs, env, now_ms=T0 + 50)
    legacy.write(p11, pki, "c", person("11", "11", seed=3), now_ms=T0 + 60)
    legacy.write(p11, pki, "c", {}, op="delete", now_ms=T0 + 70)  # a tombstone keeps its fields
    before = {rid: shown(p11, rid) for rid in "abc"}
    last = p11.last_seq()
    for rid in "abc":  # v1 history: readable, and not yet writable as deltas
        with pytest.raises(LocalError, match="needs its v2 baseline first"):
            p11.record_graph("person", rid)
    with pytest.raises(LocalError, match="needs its v2 baseline first"):
        p11.write_delta("person", "a", {"children": 3}, op="update", operator=None, now_ms=T0 + 80,
                        seal=pki.sealer("province-11"))
    assert p11.last_seq() == last

    report = p11.baseline_v2(seal=pki.sealer("province-11"), now_ms=T0 + 100, batch=2)  # batches of 2: a page break
    assert (report.written, report.already, report.elsewhere, report.conflicted) == (2, 0, 1, [])
    assert {rid: shown(p11, rid) for rid in "abc"} == before
    assert p11.last_seq() == last + 2
    for rid, routes in (("a", {"11", "44"}), ("c", {"11"})):
        (delta,) = p11.record_graph("person", rid).held.values()
        assert delta.legacy and delta.op == "create" and delta.origin == "province-11" and delta.routes == routes
        assert delta.values["_deleted"] is (rid == "c")
    assert p11.record_graph("person", "a").view().values()["name"] == "张叁"  # 44's v1 write is in the baseline
    # Logged like any own write: the cross-province one waits in the outbox for the hub.
    assert [(e.record_id, e.seq) for e in p11.outbox(last)] == [("a", last + 1)]

    again = p11.baseline_v2(seal=pki.sealer("province-11"), now_ms=T0 + 200)
    assert (again.written, again.already, again.elsewhere) == (0, 2, 1) and p11.last_seq() == last + 2

    p11.write_delta("person", "a", {"children": 3}, op="update", operator=None, now_ms=T0 + 300,
                    seal=pki.sealer("province-11"))
    values, deleted, conflicts = shown(p11, "a")
    assert values == {**before["a"][0], "children": 3} and (deleted, conflicts) == (False, [])


def test_a_record_with_an_open_conflict_is_left_for_its_settlement(db_url: str, pki: PKI, tmp_path: Path,
                                                                   opened: list[Store]) -> None:
    p11 = opened_store(db_url, "province-11", opened)
    p44 = opened_store(f"sqlite:///{tmp_path / '44.db'}", "province-44", opened)
    created, env = legacy.write(p11, pki, "d", person("11", "44", seed=4), now_ms=T0)
    legacy.deliver(p44, created, env, now_ms=T0 + 10)
    ours, _ = legacy.write(p11, pki, "d", {"name": "张三丰"}, now_ms=T0 + 20)  # concurrent with 44's
    theirs, env = legacy.write(p44, pki, "d", {"name": "张叁"}, now_ms=T0 + 30)
    legacy.deliver(p11, theirs, env, now_ms=T0 + 40)
    before = shown(p11, "d")
    assert before[2] == ["name"]
    report = p11.baseline_v2(seal=pki.sealer("province-11"), now_ms=T0 + 100)
    assert (report.written, report.conflicted) == (0, [("person", "d")])
    assert shown(p11, "d") == before
    with pytest.raises(LocalError, match="needs its v2 baseline first"):
        p11.record_graph("person", "d")


def test_a_replica_holding_v1_history_takes_the_baseline_and_stays_readable_and_writable(
        db_url: str, pki: PKI, tmp_path: Path, opened: list[Store]) -> None:
    p11 = opened_store(f"sqlite:///{tmp_path / '11.db'}", "province-11", opened)
    p44 = opened_store(db_url, "province-44", opened)
    created, env = legacy.write(p11, pki, "a", person("11", "44", seed=5), now_ms=T0)
    legacy.deliver(p44, created, env, now_ms=T0 + 10)
    edit, env = legacy.write(p44, pki, "a", {"children": 1}, now_ms=T0 + 20)
    legacy.deliver(p11, edit, env, now_ms=T0 + 30)
    before = shown(p44, "a")
    assert shown(p11, "a") == before
    with pytest.raises(LocalError, match="needs its v2 baseline first"):
        p44.record_graph("person", "a")
    # The residence province signs no baseline for a record whose household is elsewhere.
    mine = p44.baseline_v2(seal=pki.sealer("province-44"), now_ms=T0 + 40)
    assert (mine.written, mine.elsewhere) == (0, 1)

    p11.baseline_v2(seal=pki.sealer("province-11"), now_ms=T0 + 50)
    arrived = received(pki, baseline_envelope(p11, "a"))
    result = p44.receive_deltas([arrived], via="hub-pearl", now_ms=T0 + 60)
    assert (result.held, result.quarantined, result.parked) == (1, 0, 0)
    assert shown(p44, "a") == before  # it replaces nothing the baseline does not carry
    assert p44.receive_deltas([arrived], via="hub-pearl", now_ms=T0 + 61).duplicates == 1

    did, delta = p44.write_delta("person", "a", {"children": 2}, op="update", operator=None, now_ms=T0 + 70,
                                 seal=pki.sealer("province-44"))
    assert delta.deps == (arrived.id,)
    (entry,) = [e for e in p44.history("person", "a") if e.origin == "province-44" and e.seq == delta.seq]
    back = p11.receive_deltas([received(pki, Envelope(entry.body, entry.seal, delta.openings()))],
                              via="hub-pearl", now_ms=T0 + 80)
    assert back.held == 1
    assert shown(p11, "a") == shown(p44, "a") == ({**before[0], "children": 2}, False, [])


def test_a_create_that_races_ahead_of_the_baseline_waits_for_it(db_url: str, pki: PKI, tmp_path: Path,
                                                                 opened: list[Store]) -> None:
    p11 = opened_store(f"sqlite:///{tmp_path / '11.db'}", "province-11", opened)
    p44 = opened_store(db_url, "province-44", opened)
    created, env = legacy.write(p11, pki, "a", person("11", "44", seed=6), now_ms=T0)
    legacy.deliver(p44, created, env, now_ms=T0 + 10)
    before = shown(p44, "a")
    p31 = opened_store(f"sqlite:///{tmp_path / '31.db'}", "province-31", opened)  # never held it
    did, delta = p31.write_delta("person", "a", person("11", "31", seed=7), op="create", operator=None,
                                 now_ms=T0 + 20, seal=pki.sealer("province-31"))
    (entry,) = p31.history("person", "a")
    racing = received(pki, Envelope(entry.body, entry.seal, delta.openings()))
    early = p44.receive_deltas([racing], via="hub-pearl", now_ms=T0 + 30)
    assert (early.held, early.parked, early.quarantined) == (0, 1, 0)
    assert [(p.digest, p.waiting_for) for p in p44.parked_deltas()] == [(did, ("baseline",))]
    assert shown(p44, "a") == before  # the v1 state stands meanwhile

    p11.baseline_v2(seal=pki.sealer("province-11"), now_ms=T0 + 40)
    late = p44.receive_deltas([received(pki, baseline_envelope(p11, "a"))], via="hub-pearl", now_ms=T0 + 50)
    assert (late.held, late.released) == (2, [did]) and p44.parked_deltas() == []
    assert shown(p44, "a") == before  # the racing create is a claim: held apart, counted for nothing
    assert p44.record_graph("person", "a").view().claims == frozenset({did})
