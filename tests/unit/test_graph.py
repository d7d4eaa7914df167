"""core.graph against a Byzantine writer (issue 10's property tests, on the pure v2 core).

Random histories of 3 to 5 honest provinces and one Byzantine province (45) over a
few person records. Every message may be delivered to any replica, any number of
times, in any order; the Byzantine writer sees everything and forges prior
involvement, claims records, backdates, equivocates, stamps the future, lies
about routes, signs as another province and replays. Afterwards:

* honest replicas that received the same messages hold identical records;
* no version written by an honest province is altered or dropped;
* the Byzantine writer changes nothing in records it is not involved in (honest
  provinces never move a person to 45 nor accept its claims), and no honest delta
  about such a record is routed to it. One record in each history names 45 as the
  residence province, so there its forgeries are authorised and the first two
  properties are tested against real equivocation and backdating.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.delta import Delta, delta_id, parse
from core.errors import Malformed
from core.graph import DUPLICATE, HELD, PARKED, REFUSED, RecordGraph, Rules
from core.hlc import Timestamp
from core.person import person_provinces

BYZ = "45"
POOL = ["11", "31", "44", "65", "13"]
RULES = Rules(person_provinces, ("household_province", "residence_province"), anchor="household_province",
              arbiter_fields=("id_number",),
              arbiter=lambda values: str(values.get("id_number", ""))[:2] or None)
NOW = 1_800_000_000_000


def origin(p: str) -> str:
    return f"province-{p}"


class World:
    """Honest replicas, a message pool, and each province's write counter."""

    def __init__(self, honest: list[str], records: list[tuple[str, str]]) -> None:
        self.honest = honest
        self.records = {f"k{i}": hr for i, hr in enumerate(records)}  # key -> (household, residence)
        self.involves_byz = {k for k, (_, residence) in self.records.items() if residence == BYZ}
        self.replicas = {p: {k: RecordGraph("person", k, RULES) for k in self.records} for p in honest}
        self.pool: list[tuple[str, Delta, str]] = []  # (id, delta, signer)
        self.seq = {p: 0 for p in honest + [BYZ]}
        self.clock = NOW
        self.honest_ids: set[str] = set()
        self.byz: dict[str, RecordGraph] = {}  # 45's own replicas: it sees every message

    def tick(self) -> Timestamp:
        self.clock += 1
        return Timestamp(self.clock, 0, "")

    def at(self, p: str) -> Timestamp:
        return Timestamp(self.tick().wall_ms, 0, origin(p))

    def next_seq(self, p: str) -> int:
        self.seq[p] += 1
        return self.seq[p]

    def honest_write(self, p: str, k: str, values: dict, op: str = "update", accepts: tuple = ()) -> None:
        graph = self.replicas[p][k]
        did, delta, body = graph.write(values, origin=origin(p), epoch=0, seq=self.next_seq(p),
                                       at=self.at(p), op=op, accepts=accepts, now_ms=self.clock)
        assert parse(body, delta.openings()) == delta and delta_id(body) == did  # what travels is what was held
        if k not in self.involves_byz:
            assert BYZ not in delta.routes
        self.pool.append((did, delta, origin(p)))
        self.honest_ids.add(did)

    def deliver(self, i: int, p: str) -> None:
        did, delta, signer = self.pool[i % len(self.pool)]
        graph = self.replicas[p].get(delta.record_id)
        if graph is not None:
            graph.receive(did, delta, author=signer, now_ms=self.clock)


def person(k: str, household: str, residence: str, name: str) -> dict:
    return {"id_number": f"{household}0101199001011234", "name": name, "household_province": household,
            "residence_province": residence}


# -- honest actions ----------------------------------------------------------------------------------


def register(w: World, p: str, k: str, name: str) -> None:
    """The household registers its person, or the residence province registers it as living there."""
    household, residence = w.records[k]
    graph = w.replicas[p][k]
    if any(d.origin == origin(p) for d in graph.held.values()):
        return  # it holds the record and has written it: an honest node updates, never creates again
    if p == household:
        w.honest_write(p, k, person(k, household, residence, name), op="create")
    elif p != BYZ:
        w.honest_write(p, k, person(k, household, p, name), op="create")


def edit(w: World, p: str, k: str, choice: int, value: int) -> None:
    graph = w.replicas[p][k]
    view = graph.view()
    if p not in view.involved or not view.confirmed_for(p):
        return
    if choice == 0:
        values: dict = {"name": f"名{value % 5}"}
    elif choice == 1:
        values = {"children": value % 4}
    else:
        values = {"residence_province": w.honest[value % len(w.honest)]}  # a move, never to 45
    w.honest_write(p, k, values)


def accept_honest_claims(w: World, p: str, k: str) -> None:
    graph = w.replicas[p][k]
    view = graph.view()
    if w.records[k][0] != p or p not in view.involved or not view.confirmed_for(p):
        return
    claims = tuple(sorted(c for c in view.claims if graph.held[c].origin != origin(BYZ)))
    if claims:
        w.honest_write(p, k, {}, op="accept", accepts=claims)


# -- Byzantine actions ---------------------------------------------------------------------------------


def forge(w: World, k: str, data: st.DataObject) -> None:
    """One hostile delta. Half are blind forgeries of any shape the envelope allows; the rest
    start from a valid delta built on 45's own replica (which sees every message) and then
    twist one thing: a twin at the same seq, dependencies that skip 45's own last delta,
    a far-future stamp, or routes that leave someone out."""
    if data.draw(st.booleans()):
        twisted(w, k, data)
    else:
        blind(w, k, data)


def byz_replica(w: World, k: str) -> RecordGraph:
    graph = w.byz.setdefault(k, RecordGraph("person", k, RULES))
    for did, delta, signer in w.pool:
        if delta.record_id == k:
            graph.receive(did, delta, author=signer, now_ms=w.clock)
    return graph


def twisted(w: World, k: str, data: st.DataObject) -> None:
    graph = byz_replica(w, k)
    household, _ = w.records[k]
    op = "create" if not graph.held else "update"
    values = person(k, household, BYZ, "冒名") if op == "create" else {"name": data.draw(st.sampled_from(["甲", "乙"]))}
    try:
        did, delta, _ = graph.write(values, origin=origin(BYZ), epoch=0, seq=w.next_seq(BYZ), at=w.at(BYZ),
                                    op=op, now_ms=w.clock)
    except ValueError:  # not involved here: its own replica refuses to hold the write
        return blind(w, k, data)
    twist = data.draw(st.sampled_from(["none", "twin", "skip", "future", "routes"]))
    if twist == "twin":  # equivocation: same seq, other content, and both go out
        w.pool.append((did, delta, origin(BYZ)))
        delta = replace(delta, values={**delta.values, "name": "双面"})
    elif twist == "skip" and delta.op != "create":  # backdating: built beside its own last delta
        w.pool.append((did, delta, origin(BYZ)))
        delta = replace(delta, seq=delta.seq + 3, at=Timestamp(delta.at.wall_ms + 1, 0, delta.origin),
                        values={"children": 9, "_deleted": False})
    elif twist == "future":
        delta = replace(delta, at=Timestamp(delta.at.wall_ms + 25 * 3600 * 1000, 0, delta.origin))
    elif twist == "routes":
        delta = replace(delta, routes=delta.routes - {household})
    body = delta.to_body()
    w.pool.append((did if twist == "none" else delta_id(body), delta, origin(BYZ)))


def blind(w: World, k: str, data: st.DataObject) -> None:
    household, _ = w.records[k]
    seen = sorted({did for did, d, _ in w.pool if d.record_id == k})
    trick = data.draw(st.sampled_from(["found", "reside", "update", "accept", "as-other", "replay"]))
    deps: tuple[str, ...] = ()
    op = "create"
    values: dict = {}
    if trick == "found":  # claims to be the household
        values = person(k, household, BYZ, "冒名") | {"household_province": BYZ}
    elif trick == "reside":  # claims the person lives in 45
        values = person(k, household, BYZ, "冒名")
    elif trick in ("update", "accept", "as-other"):
        if not seen:
            return
        deps = tuple(sorted(data.draw(st.sets(st.sampled_from(seen), min_size=1, max_size=3))))
        op = "accept" if trick == "accept" else "update"
        values = {"residence_province": BYZ, "name": "劫持"} if op == "update" else {}
    else:
        if w.pool:
            w.pool.append(w.pool[data.draw(st.integers(0, len(w.pool) - 1))])
        return
    accepts = deps if trick == "accept" else ()
    seq = data.draw(st.sampled_from([w.next_seq(BYZ), w.seq[BYZ], 1]))
    lead = data.draw(st.sampled_from([0, -10_000, 25 * 3600 * 1000]))
    routes = data.draw(st.sampled_from([frozenset({BYZ}), frozenset(w.honest) | {BYZ}, frozenset({household, BYZ})]))
    author = origin(data.draw(st.sampled_from(w.honest))) if trick == "as-other" else origin(BYZ)
    delta = Delta("person", k, author, 0, seq, Timestamp(w.clock + lead, 0, author), op, None, deps,
                  accepts, values | {"_deleted": False} if op != "accept" else values, routes, {})
    w.pool.append((delta_id(delta.to_body()), delta, origin(BYZ)))  # signed by 45, whatever it claims


# -- the property ----------------------------------------------------------------------------------------


def views(w: World, k: str) -> list:
    return [w.replicas[p][k].view() for p in w.honest]


def settle(w: World, data: st.DataObject) -> None:
    """Everyone hears everything (in its own order, twice), households accept honest claims, repeat."""
    for _ in range(3):
        for p in w.honest:
            order = data.draw(st.permutations(range(len(w.pool)))) if w.pool else []
            for i in list(order) + list(order):
                w.deliver(i, p)
        for k, (household, _) in w.records.items():
            register(w, household, k, "户籍")
            accept_honest_claims(w, household, k)
    for p in w.honest:
        for i in range(len(w.pool)):
            w.deliver(i, p)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_honest_replicas_converge_and_the_byzantine_writer_changes_nothing(data: st.DataObject) -> None:
    honest = data.draw(st.lists(st.sampled_from(POOL), min_size=3, max_size=5, unique=True))
    records = [(data.draw(st.sampled_from(honest)), data.draw(st.sampled_from(honest))) for _ in range(2)]
    records.append((data.draw(st.sampled_from(honest)), BYZ))
    w = World(honest, records)
    keys = sorted(w.records)
    for _ in range(data.draw(st.integers(4, 30))):
        action = data.draw(st.sampled_from(["register", "edit", "edit", "accept", "byz", "byz", "deliver",
                                            "deliver", "deliver"]))
        p, k = data.draw(st.sampled_from(honest)), data.draw(st.sampled_from(keys))
        if action == "register":
            register(w, p, k, data.draw(st.sampled_from(["张三", "张叁"])))
        elif action == "edit":
            edit(w, p, k, data.draw(st.integers(0, 2)), data.draw(st.integers(0, 100)))
        elif action == "accept":
            accept_honest_claims(w, p, k)
        elif action == "byz":
            forge(w, k, data)
        elif w.pool:
            for _ in range(data.draw(st.integers(1, 4))):
                w.deliver(data.draw(st.integers(0, len(w.pool) - 1)), data.draw(st.sampled_from(honest)))
    settle(w, data)

    for k in keys:
        vs = views(w, k)
        # Converged: identical records, claims, flags, and the same deltas held and parked.
        assert all(v == vs[0] for v in vs), k
        held = [set(w.replicas[p][k].held) for p in honest]
        assert all(h == held[0] for h in held)
        assert len({frozenset(w.replicas[p][k].parked) for p in honest}) == 1
        view = vs[0]
        graph = w.replicas[honest[0]][k]
        # Nothing honest dropped: every honest delta counts, and each value it wrote survives
        # unless a counted delta that writes the same field descends from it.
        for did, delta in graph.held.items():
            if did not in w.honest_ids:
                continue
            assert did in view.counted, (k, delta.origin, delta.op)
            for name in delta.values:
                alive = {v.delta for v in view.fields[name]}
                assert did in alive or any(
                    name in graph.held[e].values and did in graph._ancestors(e) for e in alive), (k, name)
        if k in w.involves_byz:
            continue
        # The Byzantine writer changed nothing: the record is what the honest deltas alone make.
        honest_only = RecordGraph("person", k, RULES)
        for did, delta, signer in w.pool:
            if did in w.honest_ids and delta.record_id == k:
                honest_only.receive(did, delta, author=signer, now_ms=w.clock)
        clean = honest_only.view()
        assert view.fields == clean.fields and view.involved == clean.involved
        assert view.counted == clean.counted and not view.disputed
        assert BYZ not in view.involved


# -- single rules, by example ---------------------------------------------------------------------------


def test_a_delta_signed_by_another_province_is_refused() -> None:
    g = RecordGraph("person", "k", RULES)
    did, delta, _ = g.write(person("k", "11", "65", "张三"), origin="province-11", epoch=0, seq=1,
                            at=Timestamp(NOW, 0, "province-11"), op="create")
    other = RecordGraph("person", "k", RULES)
    d = other.receive(did, delta, author="province-44", now_ms=NOW)
    assert d.outcome == REFUSED and "signed by province-44" in d.reason
    assert other.receive(did, delta, author="province-11", now_ms=NOW).outcome == HELD
    assert other.receive(did, delta, author="province-11", now_ms=NOW).outcome == DUPLICATE


def test_an_uninvolved_writer_is_refused_whatever_it_claims_to_have_seen() -> None:
    g = RecordGraph("person", "k", RULES)
    root, _, _ = g.write(person("k", "11", "65", "张三"), origin="province-11", epoch=0, seq=1,
                         at=Timestamp(NOW, 0, "province-11"), op="create")
    hijack = Delta("person", "k", "province-44", 0, 1, Timestamp(NOW + 1, 0, "province-44"), "update", None,
                   (root,), (), {"residence_province": "44", "_deleted": False}, frozenset({"11", "44", "65"}), {})
    d = g.receive(delta_id(hijack.to_body()), hijack, author="province-44", now_ms=NOW)
    assert d.outcome == REFUSED and d.reason.startswith("unauthorised: province-44 is not involved")
    assert g.view().values()["residence_province"] == "65"


def test_routes_that_leave_out_a_province_are_refused() -> None:
    g = RecordGraph("person", "k", RULES)
    root, _, _ = g.write(person("k", "11", "65", "张三"), origin="province-11", epoch=0, seq=1,
                         at=Timestamp(NOW, 0, "province-11"), op="create")
    sneaky = Delta("person", "k", "province-11", 0, 2, Timestamp(NOW + 1, 0, "province-11"), "update", None,
                   (root,), (), {"name": "李四", "_deleted": False}, frozenset({"11"}), {})
    d = g.receive(delta_id(sneaky.to_body()), sneaky, author="province-11", now_ms=NOW)
    assert d.outcome == REFUSED and d.reason.startswith("routes: 11 is not what the history says (11, 65)")


def test_missing_dependencies_park_and_arrival_releases() -> None:
    a = RecordGraph("person", "k", RULES)
    root, rdelta, _ = a.write(person("k", "11", "65", "张三"), origin="province-11", epoch=0, seq=1,
                              at=Timestamp(NOW, 0, "province-11"), op="create")
    child, cdelta, _ = a.write({"children": 2}, origin="province-11", epoch=0, seq=2,
                               at=Timestamp(NOW + 1, 0, "province-11"))
    b = RecordGraph("person", "k", RULES)
    parked = b.receive(child, cdelta, author="province-11", now_ms=NOW)
    assert parked.outcome == PARKED and parked.waiting_for == {root}
    held = b.receive(root, rdelta, author="province-11", now_ms=NOW)
    assert held.released == (child,) and b.view() == a.view()


def test_a_delta_stamped_a_day_ahead_waits_until_it_is_not() -> None:
    g = RecordGraph("person", "k", RULES)
    ahead = Timestamp(NOW + 25 * 3600 * 1000, 0, "province-11")
    future = Delta("person", "k", "province-11", 0, 1, ahead, "create", None, (), (),
                   person("k", "11", "65", "张三") | {"_deleted": False}, frozenset({"11", "65"}), {})
    did = delta_id(future.to_body())
    assert g.receive(did, future, author="province-11", now_ms=NOW).outcome == PARKED
    assert g.release(NOW + 1800 * 1000) == ()  # still 24.5 h ahead
    assert g.release(NOW + 2 * 3600 * 1000) == (did,)


def test_equivocation_keeps_both_and_flags_the_author() -> None:
    g = RecordGraph("person", "k", RULES)
    root, _, _ = g.write(person("k", "11", "44", "张三"), origin="province-11", epoch=0, seq=1,
                         at=Timestamp(NOW, 0, "province-11"), op="create")
    twins = []
    for name in ("甲", "乙"):
        d = Delta("person", "k", "province-44", 0, 7, Timestamp(NOW + 1, 0, "province-44"), "update", None,
                  (root,), (), {"name": name, "_deleted": False}, frozenset({"11", "44"}), {})
        twins.append(delta_id(d.to_body()))
        assert g.receive(twins[-1], d, author="province-44", now_ms=NOW).outcome == HELD
    view = g.view()
    assert view.equivocating == {"province-44"}
    assert {v.value for v in view.conflicts()["name"]} == {"甲", "乙"}


def test_skipping_ones_own_earlier_delta_counts_for_nothing() -> None:
    g = RecordGraph("person", "k", RULES)
    root, _, _ = g.write(person("k", "11", "44", "张三"), origin="province-11", epoch=0, seq=1,
                         at=Timestamp(NOW, 0, "province-11"), op="create")
    g.write({"name": "李四"}, origin="province-44", epoch=0, seq=5, at=Timestamp(NOW + 1, 0, "province-44"))
    late = Delta("person", "k", "province-44", 0, 6, Timestamp(NOW + 2, 0, "province-44"), "update", None,
                 (root,), (), {"children": 3, "_deleted": False}, frozenset({"11", "44"}), {})
    did = delta_id(late.to_body())
    assert g.receive(did, late, author="province-44", now_ms=NOW).outcome == HELD
    assert did in g.view().backdated and "children" not in g.view().values()


def test_a_claim_waits_for_the_household_and_counts_once_accepted() -> None:
    g = RecordGraph("person", "k", RULES)
    g.write(person("k", "11", "65", "张三"), origin="province-11", epoch=0, seq=1,
            at=Timestamp(NOW, 0, "province-11"), op="create")
    elsewhere = RecordGraph("person", "k", RULES)
    claim, cdelta, _ = elsewhere.write(person("k", "11", "44", "张叁"), origin="province-44", epoch=0, seq=1,
                                       at=Timestamp(NOW + 1, 0, "province-44"), op="create")
    assert g.receive(claim, cdelta, author="province-44", now_ms=NOW).outcome == HELD
    assert g.view().claims == {claim} and "44" not in g.view().involved
    _, accept, _ = g.write({}, origin="province-11", epoch=0, seq=2, at=Timestamp(NOW + 2, 0, "province-11"),
                           op="accept", accepts=(claim,))
    view = g.view()
    assert "44" in accept.routes and "44" in view.involved and not view.claims
    assert {v.value for v in view.conflicts()["name"]} == {"张三", "张叁"}  # differing fields: a conflict


def test_two_households_for_one_person_are_a_dispute_unless_the_resident_id_settles_it() -> None:
    g = RecordGraph("person", "k", RULES)
    g.write(person("k", "11", "65", "张三"), origin="province-11", epoch=0, seq=1,
            at=Timestamp(NOW, 0, "province-11"), op="create")
    rival = RecordGraph("person", "k", RULES)
    did, delta, _ = rival.write(person("k", "11", "44", "张三") | {"household_province": "44"},
                                origin="province-44", epoch=0, seq=1, at=Timestamp(NOW, 0, "province-44"),
                                op="create")
    g.receive(did, delta, author="province-44", now_ms=NOW)
    assert g.view().rank == 0 and g.view().claims == {did} and not g.view().disputed  # the ID names 11
    moved = RecordGraph("person", "m", RULES)  # neither household is the ID's province: a visible dispute
    moved.write(person("m", "11", "65", "张三") | {"id_number": "310101199001011234"}, origin="province-11",
                epoch=0, seq=1, at=Timestamp(NOW, 0, "province-11"), op="create")
    other = RecordGraph("person", "m", RULES)
    did, delta, _ = other.write(person("m", "44", "44", "张三") | {"id_number": "310101199001011234"},
                                origin="province-44", epoch=0, seq=1, at=Timestamp(NOW, 0, "province-44"),
                                op="create")
    moved.receive(did, delta, author="province-44", now_ms=NOW)
    assert moved.view().disputed and moved.view().counted == frozenset() and not moved.view().involved


@pytest.mark.parametrize("change, message", [
    (lambda b: b.replace(b'"v":2', b'"v":1'), "v: protocol version 1"),
    (lambda b: b.replace(b'"op":"update"', b'"op":"merge"'), "op:"),
    (lambda b: b.replace(b'"deps":["', b'"deps":["zz'), "deps:"),
    (lambda b: b.replace(b'"routes":["11"', b'"routes":["99"'), "routes:"),
    (lambda b: b.replace(b'"seq":2', b'"seq":' + str(2**63).encode()), "seq:"),
    (lambda b: b.replace(b'"chain":{}', b'"chain":{"11":0}'), "chain:"),
    (lambda b: b.replace(b'"origin":"province-11"', b'"origin":"hub-pearl"'), "origin:"),
    (lambda b: b[:-1] + b',"extra":1}', "extra: not a field"),
])
def test_parse_refuses_malformed_envelopes_naming_the_key(change, message) -> None:  # type: ignore[no-untyped-def]
    good = Delta("person", "k", "province-11", 0, 2, Timestamp(NOW, 0, "province-11"), "update", None,
                 ("a" * 64,), (), {"name": "x", "_deleted": False}, frozenset({"11"}), {})
    body = good.to_body()
    assert parse(body, good.openings()) == good
    with pytest.raises(Malformed, match=message.replace("(", r"\(")):
        parse(change(body), good.openings())
    assert replace(good, seq=3) != good


def test_a_kinds_writer_rule_is_judged_on_the_history() -> None:
    """A request's answer is its receiver's, everything it sends its sender's (core.request)."""
    from core.kinds import graph_rules

    g = RecordGraph("request", "q1", graph_rules("request"))
    sender, receiver = origin("11"), origin("44")
    g.write({"from_province": "11", "to_province": "44", "subject": "婚育证明", "state": "open"}, origin=sender,
            epoch=0, seq=1, at=Timestamp(NOW, 0, sender), op="create", now_ms=NOW)
    g.write({"answer": "已核实", "state": "answered"}, origin=receiver, epoch=0, seq=1,
            at=Timestamp(NOW + 1, 0, receiver), now_ms=NOW)
    for author, seq, values in ((receiver, 2, {"subject": "改"}), (sender, 2, {"answer": "伪造"})):
        forged = Delta("request", "q1", author, 0, seq, Timestamp(NOW + 2, 0, author), "update", None, g.heads(), (),
                       {**values, "_deleted": False}, frozenset({"11", "44"}), {})
        decision = g.receive(delta_id(forged.to_body()), forged, author=author, now_ms=NOW)
        assert decision.outcome == REFUSED and "may be written only by" in decision.reason, decision
    assert g.view().values()["answer"] == "已核实" and g.view().values()["subject"] == "婚育证明"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_newly_involved_province_gets_a_verifiable_history_and_no_superseded_values(data: st.DataObject) -> None:
    """The relay (design doc 3.5): replayed into an empty replica with only the openings it
    carries, it makes the same record, and no superseded value of a non-routing field travels."""
    honest = data.draw(st.lists(st.sampled_from(POOL), min_size=3, max_size=4, unique=True))
    w = World(honest, [(honest[0], honest[1]), (honest[1], BYZ)])
    for _ in range(data.draw(st.integers(3, 15))):
        p, k = data.draw(st.sampled_from(honest)), data.draw(st.sampled_from(sorted(w.records)))
        if data.draw(st.booleans()):
            register(w, p, k, data.draw(st.sampled_from(["张三", "张叁"])))
        else:
            edit(w, p, k, data.draw(st.integers(0, 2)), data.draw(st.integers(0, 100)))
    settle(w, data)
    rules = RULES
    for k in sorted(w.records):
        source = w.replicas[honest[0]][k]
        view = source.view()
        fresh = RecordGraph("person", k, rules)
        sent_values: set[tuple[str, str]] = set()
        for did, delta, names in source.relay():
            body = delta.to_body()
            got = parse(body, delta.openings(names), complete=False)
            assert fresh.receive(delta_id(body), got, author=delta.origin, now_ms=w.clock).outcome == HELD
            sent_values |= {(did, n) for n in names}
        mine = fresh.view()
        assert mine.values() == view.values() and mine.involved == view.involved and mine.counted == view.counted
        alive = {(v.delta, name) for name, vs in view.fields.items() for v in vs}
        for did, name in sent_values:
            founding = name in ("household_province", "id_number") and source.held[did].op == "create"
            assert (did, name) in alive or name in RULES.routing_fields or founding, name


def test_the_view_kept_after_a_write_on_the_heads_is_the_view_computed_afresh() -> None:
    """A delta built on every held delta leaves its 'after' as the view (no second evaluation);
    it must equal evaluating the whole graph again, whatever was written."""
    g = RecordGraph("person", "k", RULES)
    g.write(person("k", "11", "44", "张三"), origin=origin("11"), epoch=0, seq=1, at=Timestamp(NOW, 0, origin("11")),
            op="create", now_ms=NOW)
    for i, values in enumerate(({"name": "张叁"}, {"residence_province": "31"}, {"children": 2})):
        g.write(values, origin=origin("11"), epoch=0, seq=i + 2, at=Timestamp(NOW + i + 1, 0, origin("11")), now_ms=NOW)
        kept = g.view()
        assert kept == g.evaluate(frozenset(g.held))
