"""Routing: every involved province gets a change exactly once, nobody else sees it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.provinces import DEFAULT_REGIONS, PROVINCES
from core.routing import NATIONAL, Filter, Topology, leaves_node, pushes_upstream

TOPO = Topology.of(DEFAULT_REGIONS)
CODES = sorted(PROVINCES)
REGIONS = sorted(DEFAULT_REGIONS)
UPSTREAM = f"hub-{NATIONAL}"


@dataclass
class Entry:
    change: int
    routes: frozenset[str]
    origin: str
    via: str


@dataclass
class Net:
    """Hub logs and subscriber cursors, driven by the Topology rules only."""

    topo: Topology
    logs: dict[str, list[Entry]] = field(default_factory=dict)
    cursors: Counter = field(default_factory=Counter)  # (subscriber, hub) -> entries consumed
    pushed_up: Counter = field(default_factory=Counter)  # regional hub -> entries considered
    received: Counter = field(default_factory=Counter)  # (province code, change) -> deliveries
    per_path: Counter = field(default_factory=Counter)  # (province, hub, change) -> deliveries
    fallback: frozenset[str] = frozenset()  # provinces that (also) pull from the national hub

    def __post_init__(self) -> None:
        for hub in list(self.topo.regions) + [NATIONAL]:
            self.logs.setdefault(hub, [])
        # Which hubs each node pulls from, and with which filter (computed once).
        self.node_subs: list[tuple[str, str, Filter]] = []
        for code in CODES:
            node = f"province-{code}"
            for hub in self.logs:
                if hub == NATIONAL and code not in self.fallback:
                    continue  # nodes reach the national hub only as a fallback
                flt = self.topo.subscription(hub, node)
                if flt is not None:
                    assert flt.provinces == frozenset({code})
                    self.node_subs.append((node, hub, flt))

    def push(self, hub: str, pusher: str, change: int, routes: frozenset[str], origin: str) -> None:
        assert self.topo.may_push(hub, pusher), (hub, pusher)
        self.logs[hub].append(Entry(change, routes, origin, via=pusher))

    def settle(self) -> None:
        """Run pushes and pulls until nothing moves."""
        moved = True
        while moved:
            moved = False
            for region in self.topo.regions:
                hub_id = f"hub-{region}"
                # regional hub pushes up everything except what came down
                log = self.logs[region]
                while self.pushed_up[region] < len(log):
                    e = log[self.pushed_up[region]]
                    self.pushed_up[region] += 1
                    if pushes_upstream(e.via, UPSTREAM):
                        self.push(NATIONAL, hub_id, e.change, e.routes, e.origin)
                        moved = True
                # regional hub pulls from national with its filter
                flt = self.topo.subscription(NATIONAL, hub_id)
                assert flt is not None
                moved |= self._pull(hub_id, NATIONAL, flt, into=self.logs[region])
            for node, hub, flt in self.node_subs:
                moved |= self._pull(node, hub, flt, into=None)

    def _pull(self, subscriber: str, hub: str, flt: Filter, *, into: list[Entry] | None) -> bool:
        log = self.logs[hub]
        start = self.cursors[(subscriber, hub)]
        self.cursors[(subscriber, hub)] = len(log)
        moved = False
        for e in log[start:]:
            if not flt.admits(e.routes, e.origin, e.via):
                continue
            moved = True
            if into is not None:
                into.append(Entry(e.change, e.routes, e.origin, via=f"hub-{hub}"))
            else:
                code = subscriber.split("-", 1)[1]
                assert code in e.routes  # privacy: never offered what it does not serve
                self.received[(code, e.change)] += 1
                self.per_path[(code, hub, e.change)] += 1
        return moved


def _send(net: Net, change: int, routes: frozenset[str], origin_code: str, via_hub: str | None = None) -> bool:
    origin = f"province-{origin_code}"
    if not leaves_node(routes, origin_code):
        return False
    hub = via_hub or TOPO.region_of(origin_code)
    net.push(hub, origin, change, routes, origin)
    return True


routes_and_origin = st.sets(st.sampled_from(CODES), min_size=1, max_size=6).flatmap(
    lambda r: st.tuples(st.just(frozenset(r)), st.sampled_from(sorted(r)))
)


@given(st.lists(routes_and_origin, min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_every_routed_province_gets_each_change_exactly_once(changes: list[tuple[frozenset[str], str]]) -> None:
    net = Net(TOPO)
    left = {}
    for i, (routes, origin) in enumerate(changes):
        left[i] = _send(net, i, routes, origin)
        net.settle()  # interleave: some changes are pulled before others are written
    net.settle()
    for i, (routes, origin) in enumerate(changes):
        assert left[i] == (routes != frozenset({origin}))
        for code in CODES:
            want = 1 if code in routes and code != origin else 0
            assert net.received[(code, i)] == want, (code, routes, origin)
        # the national hub holds every change that leaves its province, exactly once
        at_national = [e for e in net.logs[NATIONAL] if e.change == i]
        assert len(at_national) == (1 if left[i] else 0)
        # a regional hub holds a change only if it serves an involved province (or its origin),
        # and never twice
        for region, served in TOPO.regions.items():
            held = [e for e in net.logs[region] if e.change == i]
            assert len(held) <= 1
            if held:
                assert served & routes
            elif left[i]:
                assert not (served & (routes - {origin}))
    assert all(n == 1 for n in net.per_path.values())


@given(routes_and_origin, st.sets(st.sampled_from(CODES), max_size=5))
@settings(max_examples=300, deadline=None)
def test_fallback_through_the_national_hub_delivers_once_per_path(
    ro: tuple[frozenset[str], str], fallback: set[str]
) -> None:
    """While its home hub is down a node pushes to, and pulls from, the national hub
    (the README's default fallback). Each path still carries a change at most once;
    a node pulling from both its home hub and the national hub gets it once from each
    (apply is idempotent on (origin, seq))."""
    routes, origin = ro
    net = Net(TOPO, fallback=frozenset(fallback))
    sent = _send(net, 0, routes, origin, via_hub=NATIONAL)
    net.settle()
    assert sent == (routes != frozenset({origin}))
    assert len([e for e in net.logs[NATIONAL] if e.change == 0]) == (1 if sent else 0)
    for code in CODES:
        wanted = code in routes and code != origin
        assert net.per_path[(code, TOPO.region_of(code), 0)] == (1 if wanted else 0)
        assert net.per_path[(code, NATIONAL, 0)] == (1 if wanted and code in fallback else 0)
        assert net.received[(code, 0)] == (1 + (code in fallback) if wanted else 0)
    for region in REGIONS:
        assert len([e for e in net.logs[region] if e.change == 0]) <= 1


def test_intra_province_changes_never_leave() -> None:
    for code in CODES:
        assert not leaves_node(frozenset({code}), code)
        assert not leaves_node(frozenset(), code)
        other = "44" if code != "44" else "11"
        assert leaves_node(frozenset({code, other}), code)
        net = Net(TOPO)
        assert not _send(net, 0, frozenset({code}), code)
        net.settle()
        assert all(not log for log in net.logs.values())
        assert not net.received


def test_cross_region_path_goes_through_national_and_the_destination_hub() -> None:
    net = Net(TOPO)
    _send(net, 7, frozenset({"44", "11"}), "44")  # pearl -> bohai
    net.settle()
    assert [e.via for e in net.logs["pearl"]] == ["province-44"]
    assert [e.via for e in net.logs[NATIONAL]] == ["hub-pearl"]
    assert [e.via for e in net.logs["bohai"]] == ["hub-national"]
    assert net.logs["yangtze"] == [] and net.logs["northwest"] == []
    assert dict(net.received) == {("11", 7): 1}


def test_default_topology_partitions_the_provinces() -> None:
    assert TOPO.served_by(NATIONAL) == frozenset(CODES)
    seen: set[str] = set()
    for region in REGIONS:
        served = TOPO.served_by(region)
        assert not served & seen
        seen |= served
        for code in served:
            assert TOPO.region_of(code) == region
    assert seen == set(CODES)
    with pytest.raises(KeyError):
        TOPO.region_of("71")
    assert TOPO.served_by("nowhere") == frozenset()


def test_subscriptions() -> None:
    for code in CODES:
        node = f"province-{code}"
        own = TOPO.region_of(code)
        assert TOPO.subscription(own, node) == Filter(frozenset({code}), not_origin=node)
        for region in REGIONS:
            if region != own:
                assert TOPO.subscription(region, node) is None  # hub does not serve it
    for region in REGIONS:
        hub = f"hub-{region}"
        flt = TOPO.subscription(NATIONAL, hub)
        assert flt == Filter(frozenset(DEFAULT_REGIONS[region]), not_via=hub)
        for other in REGIONS:
            assert TOPO.subscription(other, hub) is None  # hubs pull only from national
        assert TOPO.subscription(region, UPSTREAM) is None  # national pulls from no one
    assert TOPO.subscription(NATIONAL, UPSTREAM) is None
    assert TOPO.subscription("pearl", "operator-44-admin") is None
    assert TOPO.subscription(NATIONAL, "operator-national-admin") is None


def test_any_province_filter_only_admits_its_own_province() -> None:
    for hub in REGIONS + [NATIONAL]:
        for code in CODES:
            flt = TOPO.subscription(hub, f"province-{code}")
            if flt is None:
                continue
            assert flt.provinces == frozenset({code})
            assert not flt.admits(frozenset(set(CODES) - {code}), "province-11", "x")
            assert flt.admits(frozenset({code}), "province-99x", "x")
            assert not flt.admits(frozenset({code}), f"province-{code}", "x")  # no echo


def test_may_push() -> None:
    for code in CODES:
        node = f"province-{code}"
        for region in REGIONS:
            assert TOPO.may_push(region, node) == (code in DEFAULT_REGIONS[region])
    for region in REGIONS:
        hub = f"hub-{region}"
        assert TOPO.may_push(NATIONAL, hub)
        for other in REGIONS:
            assert not TOPO.may_push(other, hub)
        assert not TOPO.may_push(region, UPSTREAM)
    assert not TOPO.may_push(NATIONAL, UPSTREAM)
    assert not TOPO.may_push("pearl", "operator-44-admin")
    assert not TOPO.may_push(NATIONAL, "operator-national-admin")


def test_filter_admits() -> None:
    f = Filter(frozenset({"44", "45"}), not_origin="province-44", not_via="hub-pearl")
    assert f.admits(frozenset({"44"}), "province-11", "hub-national")
    assert f.admits(frozenset({"11", "45"}), "province-11", "province-11")
    assert not f.admits(frozenset({"11"}), "province-11", "hub-national")  # not routed here
    assert not f.admits(frozenset(), "province-11", "hub-national")
    assert not f.admits(frozenset({"44"}), "province-44", "hub-national")  # own change
    assert not f.admits(frozenset({"45"}), "province-11", "hub-pearl")  # own push


def test_pushes_upstream() -> None:
    assert pushes_upstream("province-44", UPSTREAM)
    assert not pushes_upstream(UPSTREAM, UPSTREAM)


def test_guests_may_use_a_second_hub_and_get_each_change_once_per_path() -> None:
    topo = Topology.of(DEFAULT_REGIONS, guests={"yangtze": ["44"]})
    assert topo.may_push("yangtze", "province-44")
    assert topo.subscription("yangtze", "province-44") == Filter(frozenset({"44"}), not_origin="province-44")
    assert topo.served_by("yangtze") == frozenset(DEFAULT_REGIONS["yangtze"]) | {"44"}
    assert not topo.may_push("yangtze", "province-45")
    assert topo.subscription("yangtze", "province-45") is None
    net = Net(topo)
    # From 11 (bohai) to 44: 44 can hear it from pearl and, as a guest, from yangtze.
    net.push("bohai", "province-11", 0, frozenset({"11", "44"}), "province-11")
    net.settle()
    assert net.per_path[("44", "pearl", 0)] == 1
    assert net.per_path[("44", "yangtze", 0)] == 1
    assert net.received[("11", 0)] == 0
    assert {code for (code, _), n in net.received.items() if n} == {"44"}
