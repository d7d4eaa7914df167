"""Whole-federation convergence in one process (tests/support/memnet.py): four province nodes,
two regional hubs and the national hub, real stores, signatures, intake and core.session
windows, over a simulated network that delays, breaks streams (losing or late-processing what
was on the wire, so batches arrive twice and out of session order), partitions members and
crashes them (losing the acks their store had noted but not yet written).

After random writes under random faults and a heal, every involved province holds the same
record, the national hub holds every cross-province record, nothing intra-province left its
node, and no ack ever covered a change its receiver did not hold (checked at every ack)."""

from __future__ import annotations

import datetime as dt
import random
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core.samples import sample_person
from tests.support.memnet import Federation
from tests.support.pki import PKI, build_pki

REGIONS = {"pearl": frozenset({"44", "45"}), "bohai": frozenset({"11", "31"})}
PROVINCES = ("44", "45", "11", "31")
FLOWS = 12  # a push and a pull per node, and per regional hub
MEMBERS = 7  # the national hub, 2 regional hubs, 4 nodes
TODAY = dt.date.today()
TEMPLATES: dict[str, Path] = {}  # identity -> a migrated empty store, copied for each run (migrating takes ~0.4 s)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Stores on a RAM disk where there is one: each ingest commits (fsync), and the run is about
    # the protocol, not the disk. The SQLite stores are real either way.
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path_factory.mktemp("memnet")
        return
    path = Path(tempfile.mkdtemp(prefix="yipanqi-memnet-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Written:
    record_id: str
    provinces: frozenset[str]


def _other(province: str, scope: int, pick: int) -> str:
    """Own province (scope 0), another in its region (1), or one in another region (2)."""
    if scope == 0:
        return province
    region = next(ps for ps in REGIONS.values() if province in ps)
    pool = sorted(region - {province}) if scope == 1 else sorted(set(PROVINCES) - region)
    return pool[pick % len(pool)]


step = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 3), st.integers(0, 2), st.integers(0, 100)),
    st.tuples(st.just("tick"), st.integers(1, 300)),
    st.tuples(st.just("break"), st.integers(0, FLOWS - 1), st.integers(0, 100)),
    st.tuples(st.just("partition"), st.integers(0, FLOWS - 1), st.integers(50, 3000), st.integers(0, 100)),
    st.tuples(st.just("crash"), st.integers(0, MEMBERS - 1), st.integers(10, 1000), st.integers(0, 100)),
)


def _run(pki: PKI, workdir: Path, templates: dict, seed: int, steps: list[tuple]) -> Federation:
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(dir=workdir))
    fed = Federation(pki, root, REGIONS, rng, templates)
    written: list[Written] = []
    try:
        for s in steps:
            if s[0] == "write":
                me = PROVINCES[s[1]]
                node = fed.members[f"province-{me}"]
                if not node.up:
                    continue  # its process is down: nobody writes there
                mine = [w for w in written if me in w.provinces and node.store.get("person", w.record_id)]
                if mine and s[3] % 3:  # an update of a record this province holds (maybe concurrent)
                    w = mine[s[3] % len(mine)]
                    fed.write(me, "person", w.record_id,
                              lambda cur, n=s[3]: ("update", {"children": n % 6}))
                else:
                    other = _other(me, s[2], s[3])
                    values = sample_person(rng, household=me, residence=other, today=TODAY)
                    w = Written(str(uuid.UUID(int=rng.getrandbits(128))), frozenset({me, other}))
                    written.append(w)
                    fed.write(me, "person", w.record_id, lambda cur, v=values: ("create", v))
            elif s[0] == "tick":
                fed.net.run_until(fed.net.now + s[1])
            # Faults strike a moment later, while what the last steps sent is on the wire.
            elif s[0] == "break":
                fed.net.at(fed.net.now + s[2], lambda f=fed.flows[s[1]]: fed.break_flow(f))
            elif s[0] == "partition":
                flow = fed.flows[s[1]]
                fed.net.at(fed.net.now + s[3], lambda a=flow.src.identity, b=flow.dst.identity, d=s[2]:
                           fed.partition(a, b, d))
            else:
                member = sorted(fed.members)[s[1]]
                fed.net.at(fed.net.now + s[3], lambda m=member, d=s[2]: fed.crash(m, d))
        fed.heal()
        _converged(fed, written)
    except BaseException:
        fed.close()
        raise
    return fed


def _converged(fed: Federation, written: list[Written]) -> None:
    national = fed.members["hub-national"]
    hubs = [m for name, m in fed.members.items() if name.startswith("hub-") and m is not national]
    for w in written:
        states = {p: fed.members[f"province-{p}"].store.get("person", w.record_id) for p in w.provinces}
        first = next(iter(states.values()))
        assert first is not None
        assert all(s == first for s in states.values()), f"{w.record_id}: provinces differ"
        if len(w.provinces) > 1:
            assert national.store.get("person", w.record_id) == first, f"{w.record_id}: national differs"
        else:  # intra-province: never left its node
            assert national.store.get("person", w.record_id) is None
            assert all(e.record_id != w.record_id for m in [national, *hubs] for e in m.log())
        for p in set(PROVINCES) - w.provinces:  # nor reached a province it does not involve
            assert fed.members[f"province-{p}"].store.get("person", w.record_id) is None
    # Every change that left a node is at its regional hub and at the national hub.
    everything = national.held()
    for p in PROVINCES:
        node = fed.members[f"province-{p}"]
        left = {(e.origin, e.seq) for e in node.store.outbox(0, 1_000_000)}
        region = next(r for r, ps in REGIONS.items() if p in ps)
        assert left <= everything and left <= fed.members[f"hub-{region}"].held()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), steps=st.lists(step, min_size=8, max_size=30))
def test_every_replica_converges_after_random_faults(pki: PKI, workdir: Path, seed: int,
                                                      steps: list[tuple]) -> None:
    fed = _run(pki, workdir, TEMPLATES, seed, steps)
    fed.close()
    # What the faults did (shown by --hypothesis-show-statistics).
    for what, n in (("breaks", fed.breaks), ("crashes", fed.crashes), ("late batches", fed.late),
                    ("duplicates received", fed.duplicates)):
        event(f"{what}: {'0' if not n else '1-4' if n < 5 else '5+'}")


def test_a_stream_broken_mid_window_resends_from_the_acknowledged_cursor(pki: PKI, workdir: Path) -> None:
    """A scripted run: a node writes while its push stream breaks again and again, what was on the
    wire processed late (its acks lost, so it is sent again); the hub ends with every change once."""
    fed = Federation(pki, Path(tempfile.mkdtemp(dir=workdir)), REGIONS, random.Random(7), TEMPLATES)
    try:
        push = next(f for f in fed.flows if f.name == "push province-44->hub-pearl")
        rng = random.Random(7)
        ids = []
        for i in range(30):
            rid = str(uuid.UUID(int=rng.getrandbits(128)))
            ids.append(rid)
            values = sample_person(rng, household="44", residence="11", today=TODAY)
            fed.write("44", "person", rid, lambda cur, v=values: ("create", v))
            fed.net.run_until(fed.net.now + 20)
            if i % 4 == 3:  # what is still on the wire is processed late, after the next session's batches
                fed.break_flow(push, reconnect_after=1, late_all=True)
        assert fed.breaks >= 3 and push.epochs >= 4
        fed.heal()
        hub = fed.members["hub-pearl"]
        origins = [(e.origin, e.seq) for e in hub.log() if e.origin == "province-44"]
        assert len(origins) == len(set(origins)) == 30  # each once, though some were sent twice:
        assert fed.duplicates > 0 and fed.late > 0
        for rid in ids:
            assert fed.members["province-11"].store.get("person", rid) == \
                fed.members["province-44"].store.get("person", rid) is not None
    finally:
        fed.close()
