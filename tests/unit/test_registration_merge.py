"""Registrations of one person at several provinces end as one record (issue 12), as a
property.

Each province computes the person's key from the ID number and the federation secret
(core.personkey), so every registration is a create of the same record id. A random
history interleaves registrations (each with its own spelling of some fields) with
deliveries between replicas (any order, duplicates, through the wire format), while
some provinces are cut off. A province registers people it is involved in (household
44 registers any residence; another province registers the person as living there), and
one that already holds the record does not register again (a second create is refused
locally). Every replica (the provinces and the national hub) receives as the store does:
a create by a province its record does not involve is held as a claim (core.claims), and
later changes of that claimer with it; a held claim merges once a received change makes
the record involve the claimer. After healing, the household province accepts the claims
it holds (one local write over the merged claims, as Store.accept_claim does) and that
change reaches everyone. Then: every replica holds exactly one record, under the key, and
no claim; all replicas are byte-identical; and the open conflicts are exactly the fields
on which the registrations made disagree, each listing exactly their distinct values.
"""

from __future__ import annotations

from datetime import date

from hypothesis import event, given, settings
from hypothesis import strategies as st

from core.apply import apply, local_write
from core.change import Change, parse
from core.claims import is_claim, settled_by
from core.hlc import Timestamp
from core.idnumber import make_id_number
from core.personkey import person_key
from core.record import RecordState

SECRET = bytes(range(32))
ID = make_id_number("440106", date(1990, 5, 17), 123)
PROVINCES = ("province-44", "province-65", "province-11", "province-31")
HOUSEHOLD = 0  # province-44
NATIONAL = len(PROVINCES)  # the national hub's replica
# Per field, the spellings provinces may register (index 0 is the common one).
SPELLINGS: dict[str, tuple[object, ...]] = {
    "name": ("张三", "张叁"),
    "residence_city": ("乌鲁木齐市", "广州市", "北京市"),
    "marital_status": ("married", "unmarried"),
    "household_province": ("44",),
    "id_number": (ID,),
}
RESIDENCES = ("65", "11", "31")

_registration = st.fixed_dictionaries({**{f: st.integers(0, len(v) - 1) for f, v in SPELLINGS.items()},
                                       "residence": st.integers(0, len(RESIDENCES) - 1)})
_event = st.one_of(
    st.tuples(st.just("register"), st.integers(0, len(PROVINCES) - 1)),
    st.tuples(st.just("deliver"), st.integers(0, 50), st.integers(0, NATIONAL)),
)


class Replica:
    """One store's view of the record: its state and the claims it holds (as store.ingest keeps them)."""

    def __init__(self) -> None:
        self.state: RecordState | None = None
        self.held: dict[tuple[str, int], Change] = {}
        self.seen: set[tuple[str, int]] = set()

    def receive(self, change: Change) -> None:
        if (change.origin, change.seq) in self.seen:
            return  # a duplicate
        self.seen.add((change.origin, change.seq))
        claimers = {origin for origin, _ in self.held}
        if is_claim(self.state, change, open_claim=change.origin in claimers):
            self.held[(change.origin, change.seq)] = change
            return
        self.state = apply(self.state, change).state
        for claimer in sorted(claimers):
            if self.state is not None and settled_by(self.state, claimer):
                for k in sorted(k for k in self.held if k[0] == claimer):
                    self.state = apply(self.state, self.held.pop(k)).state


@settings(max_examples=200, deadline=None)
@given(
    regs=st.lists(_registration, min_size=len(PROVINCES), max_size=len(PROVINCES)),
    events=st.lists(_event, min_size=1, max_size=40),
    cut_off=st.sets(st.integers(0, NATIONAL), max_size=2),
    final_order=st.permutations(range(8)),
)
def test_registrations_of_one_person_converge_to_one_record_with_exactly_the_differing_fields_in_conflict(
        regs: list[dict[str, int]], events: list[tuple], cut_off: set[int], final_order: list[int]) -> None:
    key = person_key(SECRET, ID)
    replicas = [Replica() for _ in range(NATIONAL + 1)]
    seqs = [0] * len(PROVINCES)
    sent: list[bytes] = []  # every change, as the wire carries it
    made: list[dict[str, object]] = []  # the values of the registrations actually made
    now = 1_750_000_000_000

    def write(i: int, values: dict[str, object], op: str) -> None:
        nonlocal now
        now += 1000
        seqs[i] += 1
        change = local_write(replicas[i].state, kind="person", record_id=key, values=values, node=PROVINCES[i],
                             seq=seqs[i], at=Timestamp(now, 0, PROVINCES[i]), op=op, operator=None)
        replicas[i].state = change.state
        replicas[i].seen.add((change.origin, change.seq))
        sent.append(change.to_body())

    for ev in events:
        if ev[0] == "register":
            i = ev[1]
            if replicas[i].state is not None:
                continue  # a held person is not created again
            values = {f: SPELLINGS[f][regs[i][f]] for f in SPELLINGS}
            # 44 (the household) registers any residence; another province, the person living there
            values["residence_province"] = RESIDENCES[regs[i]["residence"]] if i == HOUSEHOLD else PROVINCES[i][-2:]
            assert person_key(SECRET, str(values["id_number"])) == key  # every province computes the same key
            write(i, values, "create")
            made.append(values)
        else:
            _, which, dest = ev
            if sent and dest not in cut_off:
                body = sent[which % len(sent)]  # (a node's own change back is a duplicate: nothing)
                replicas[dest].receive(parse(body))
                replicas[dest].receive(parse(body))  # duplicates change nothing
    if not sent:
        return

    def heal() -> None:
        order = sorted(range(len(sent)), key=lambda n: final_order[n % 8] * 1000 + n)
        for r in replicas:
            for n in order + order[:1]:
                r.receive(parse(sent[n]))

    heal()
    household = replicas[HOUSEHOLD]
    event(f"claims held at the household province: {bool(household.held)}")
    if household.held:  # the household province accepts the claims it holds: merge, then one write
        assert household.state is not None
        for k in sorted(household.held):
            household.state = apply(household.state, household.held.pop(k)).state
        write(HOUSEHOLD, {}, "update")
        heal()

    for r in replicas:
        assert r.state is not None and r.state.record_id == key and r.held == {}  # one record, no claim left
    states = [r.state for r in replicas]
    assert all(s.to_bytes() == states[0].to_bytes() for s in states)  # type: ignore[union-attr]
    fields = [*SPELLINGS, "residence_province"]
    differing = {f for f in fields if len({repr(v[f]) for v in made}) > 1}
    conflicts = states[0].conflicts()  # type: ignore[union-attr]
    assert set(conflicts) == differing
    for f, versions in conflicts.items():
        assert {v.value for v in versions} == {v[f] for v in made}
    for f in fields:
        if f not in differing:
            assert states[0].values()[f] == made[0][f]  # type: ignore[union-attr]  # agreeing fields: silently
    assert not states[0].deleted  # type: ignore[union-attr]


def test_two_registrations_are_two_creates_of_one_record() -> None:
    """The concrete case: 44 writes 张叁, 65 writes 张三, same everything else."""
    key = person_key(SECRET, ID)
    base = {"id_number": ID, "household_province": "44", "residence_province": "65", "sex": "M"}
    a = local_write(None, kind="person", record_id=key, values={**base, "name": "张叁"}, node="province-44",
                    seq=1, at=Timestamp(1000, 0, "province-44"), op="create", operator=None)
    b = local_write(None, kind="person", record_id=key, values={**base, "name": "张三"}, node="province-65",
                    seq=1, at=Timestamp(2000, 0, "province-65"), op="create", operator=None)
    ab = apply(apply(None, a).state, b)
    ba = apply(apply(None, b).state, a)
    assert ab.state.to_bytes() == ba.state.to_bytes()
    assert ab.opened == ("name",) and set(ab.state.conflicts()) == {"name"}
    assert ab.state.values()["name"] == "张三"  # the later write is shown; the other stays listed
    assert isinstance(a, Change) and a.routes == b.routes == frozenset({"44", "65"})
