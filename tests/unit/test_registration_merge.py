"""Registrations of one person at several provinces merge into one record (issue 12), as a
property.

Each province computes the person's key from the ID number and the federation secret
(core.personkey), so every registration is a create of the same record id. A random
history interleaves registrations (each with its own spelling of some fields) with
deliveries between replicas (any order, duplicates, through the wire format), while
some provinces are cut off; a province that already holds the record when its turn
comes does not register again (a second create of a held record is refused locally).
At the end everything reaches every province and the national hub. Then: every
replica holds exactly one record, under the key; all replicas are byte-identical;
and the open conflicts are exactly the fields on which the registrations that were
made disagree, each listing exactly their distinct values.
"""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from core.apply import apply, local_write
from core.change import Change, parse
from core.hlc import Timestamp
from core.idnumber import make_id_number
from core.personkey import person_key
from core.record import RecordState

SECRET = bytes(range(32))
ID = make_id_number("440106", date(1990, 5, 17), 123)
PROVINCES = ("province-44", "province-65", "province-11", "province-31")
# Per field, the spellings provinces may register (index 0 is the common one).
SPELLINGS: dict[str, tuple[object, ...]] = {
    "name": ("张三", "张叁"),
    "phone": ("13800000000", "13900000000", "13700000000"),
    "residence_province": ("65", "11"),
    "household_province": ("44",),
    "id_number": (ID,),
}

_registration = st.fixed_dictionaries({f: st.integers(0, len(v) - 1) for f, v in SPELLINGS.items()})
_event = st.one_of(
    st.tuples(st.just("register"), st.integers(0, len(PROVINCES) - 1)),
    st.tuples(st.just("deliver"), st.integers(0, 50), st.integers(0, len(PROVINCES) - 1)),
)


@settings(max_examples=150, deadline=None)
@given(
    regs=st.lists(_registration, min_size=len(PROVINCES), max_size=len(PROVINCES)),
    events=st.lists(_event, min_size=1, max_size=40),
    cut_off=st.sets(st.integers(0, len(PROVINCES) - 1), max_size=2),
    final_order=st.permutations(range(8)),
)
def test_registrations_of_one_person_converge_to_one_record_with_exactly_the_differing_fields_in_conflict(
        regs: list[dict[str, int]], events: list[tuple], cut_off: set[int], final_order: list[int]) -> None:
    key = person_key(SECRET, ID)
    replicas: list[dict[str, RecordState]] = [{} for _ in PROVINCES]
    seqs = [0] * len(PROVINCES)
    sent: list[bytes] = []  # every change, as the wire carries it
    made: list[dict[str, object]] = []  # the values of the registrations actually made
    now = 1_750_000_000_000

    def receive(i: int, body: bytes) -> None:
        change = parse(body)
        assert change.record_id == key
        replicas[i][key] = apply(replicas[i].get(key), change).state

    for ev in events:
        now += 1000
        if ev[0] == "register":
            i = ev[1]
            if replicas[i].get(key) is not None:
                continue  # a held person is not created again
            values = {f: SPELLINGS[f][regs[i][f]] for f in SPELLINGS}
            seqs[i] += 1
            computed = person_key(SECRET, str(values["id_number"]))  # every province computes the same key
            change = local_write(None, kind="person", record_id=computed, values=values, node=PROVINCES[i],
                                 seq=seqs[i], at=Timestamp(now, 0, PROVINCES[i]), op="create", operator=None)
            replicas[i][computed] = change.state
            sent.append(change.to_body())
            made.append(values)
        else:
            _, which, dest = ev
            if sent and dest not in cut_off:
                receive(dest, sent[which % len(sent)])
                receive(dest, sent[which % len(sent)])  # duplicates change nothing
    if not sent:
        return
    # Healing: every change reaches every province and the national hub, in some order, with a duplicate.
    national: dict[str, RecordState] = {}
    order = sorted(range(len(sent)), key=lambda n: final_order[n % 8] * 1000 + n)
    for i in range(len(PROVINCES)):
        for n in order + order[:1]:
            receive(i, sent[n])
    for n in reversed(order):
        national[key] = apply(national.get(key), parse(sent[n])).state

    holders = [r for r in replicas if r] + [national]
    for held in holders:
        assert list(held) == [key]  # one record, under the key
    states = [h[key] for h in holders]
    assert all(s.to_bytes() == states[0].to_bytes() for s in states)
    differing = {f for f in SPELLINGS if len({repr(v[f]) for v in made}) > 1}
    conflicts = states[0].conflicts()
    assert set(conflicts) == differing
    for f, versions in conflicts.items():
        assert {v.value for v in versions} == {v[f] for v in made}
    for f in SPELLINGS:
        if f not in differing:
            assert states[0].values()[f] == made[0][f]  # agreeing fields merge silently
    assert not states[0].deleted


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
