"""core.graphstate: the RecordState a v2 history makes agrees with the graph's own view.

Reuses test_graph's random Byzantine histories. For every honest replica and record:
the state shows the view's values, conflicts and deletion; replicas with equal views
give byte-identical states; and, where no author equivocated, the v1 merge rule over
the derived clocks ("keep the versions no other strictly dominates") picks exactly
the graph's survivors, which is what makes derived clocks safe to merge with.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.graph import RecordGraph
from core.graphstate import clocks, state_of
from core.record import Version, _maximal
from tests.unit.test_graph import BYZ, POOL, World, edit, forge, register, settle


def _maximal_ids(graph: RecordGraph, name: str) -> set[str]:
    vc = clocks(graph)
    view = graph.view()
    by_version = {}
    for did in view.counted:
        delta = graph.held[did]
        if name in delta.values:
            by_version[did] = Version(delta.values[name], vc[did], delta.at)
    kept = _maximal(by_version.values())
    return {did for did, v in by_version.items() if any(v is k for k in kept)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_state_shows_the_view_and_the_v1_merge_rule_agrees(data: st.DataObject) -> None:
    honest = data.draw(st.lists(st.sampled_from(POOL), min_size=3, max_size=4, unique=True))
    records = [(data.draw(st.sampled_from(honest)), data.draw(st.sampled_from(honest))), (honest[0], BYZ)]
    w = World(honest, records)
    keys = sorted(w.records)
    for _ in range(data.draw(st.integers(4, 20))):
        action = data.draw(st.sampled_from(["register", "edit", "edit", "byz", "deliver"]))
        p, k = data.draw(st.sampled_from(honest)), data.draw(st.sampled_from(keys))
        if action == "register":
            register(w, p, k, data.draw(st.sampled_from(["张三", "张叁"])))
        elif action == "edit":
            edit(w, p, k, data.draw(st.integers(0, 2)), data.draw(st.integers(0, 100)))
        elif action == "byz":
            forge(w, k, data)
        elif w.pool:
            w.deliver(data.draw(st.integers(0, len(w.pool) - 1)), data.draw(st.sampled_from(honest)))
    settle(w, data)
    for k in keys:
        states = []
        for p in honest:
            graph = w.replicas[p][k]
            view, state = graph.view(), state_of(graph)
            states.append(state.to_bytes())
            assert state.values() == view.values()
            assert state.deleted == view.deleted
            assert set(state.conflicts()) == set(view.conflicts())
            for name, versions in view.fields.items():
                assert [v.value for v in state.fields[name]] == [v.value for v in versions]
                if not view.equivocating:
                    assert _maximal_ids(graph, name) == {v.delta for v in versions}, (k, name)
        assert len(set(states)) == 1, k


def test_derived_clocks_order_exactly_by_ancestry() -> None:
    from core.hlc import Timestamp
    from tests.unit.test_graph import RULES, person

    g = RecordGraph("person", "k0", RULES)
    a, _, _ = g.write(person("k0", "11", "44", "甲"), origin="province-11", epoch=0, seq=1,
                      at=Timestamp(1, 0, "province-11"), op="create", now_ms=10)
    b, _, _ = g.write({"name": "乙"}, origin="province-44", epoch=0, seq=1, at=Timestamp(2, 0, "province-44"),
                      now_ms=10)
    vc = clocks(g)
    assert dict(vc[a].entries) == {"province-11": 1}
    assert dict(vc[b].entries) == {"province-11": 1, "province-44": 1}
    assert vc[a].compare(vc[b]).name == "BEFORE"
    assert state_of(g).values()["name"] == "乙" and not state_of(g).conflicts()
