"""`yipanqi upgrade v2` on real node processes and their stores (issue 10's baseline upgrade).

Records with v1 history are put where a v1 federation left them (tests/support/legacy.py: whole
state changes signed with the nodes' real keys, in the household's store, the residence's and the
national hub's, everything delivered: a drained federation). The upgrade refuses a running node,
and a stopped node whose outbox its hub has not acknowledged, each with the reason and without
writing. At a drained, stopped node it signs one baseline per record whose household is its
province, leaves the others to their household, keeps every read equal, and a second run writes
nothing. Started again, the household's baselines reach the residence province and the national
hub over the v2 wire, and the record is writable there and back.
"""

from __future__ import annotations

import json
from datetime import date
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.signing import Signer
from core.person import validate_person
from runtime.config import load_node
from store.store import Store
from tests.integration.conftest import Fed, eventually, person, small_federation, yipanqi
from tests.support import legacy

N11, N44, PEARL, NATIONAL = "province-11", "province-44", "hub-pearl", "hub-national"


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    with small_federation(tmp_path / "fed", ["11", "44"]) as f:
        yield f


class _Keys:
    """What tests.support.legacy signs with: the nodes' own signing keys."""

    def __init__(self, fed: Fed) -> None:
        self.signers = {n: Signer.load(load_node(fed.fed.configs[n]).signing.key, load_node(fed.fed.configs[n]).signing.cert)
                        for n in (N11, N44)}

    def sealer(self, identity: str):  # type: ignore[no-untyped-def]
        return self.signers[identity].seal_batch


def offline(fed: Fed, who: str) -> Store:
    path = fed.root / "nodes" / who[-2:] / "node.db" if who.startswith("province-") else \
        fed.root / "hubs" / who.removeprefix("hub-") / "hub.db"
    return Store.open(f"sqlite:///{path}", owner=who, index_routes=not who.startswith("province-"))


def test_upgrade_v2_signs_the_households_baselines_on_a_drained_stopped_node(fed: Fed, rng: random.Random) -> None:
    keys = _Keys(fed)
    hubs = sorted(i for i in fed.fed.configs if i.startswith("hub-"))
    for who in [N11, N44, *hubs]:
        fed.stop(who)
    now = int(time.time() * 1000)
    s11, s44, nat = offline(fed, N11), offline(fed, N44), offline(fed, NATIONAL)
    try:
        def v1(author: Store, rid: str, values: dict, *, to: tuple[Store, ...], at: int) -> None:
            change, env = legacy.write(author, keys, rid, values, now_ms=at)  # type: ignore[arg-type]
            for s in to:
                legacy.deliver(s, change, env, now_ms=at + 1)

        ours, home, theirs = "9c1d1c0e-0000-4000-8000-000000000011", "9c1d1c0e-0000-4000-8000-000000000012", \
            "9c1d1c0e-0000-4000-8000-000000000044"
        clean = lambda p: dict(validate_person(p, today=date.today()))  # noqa: E731
        v1(s11, ours, clean(person(rng, household="11", residence="44")), to=(s44, nat), at=now - 5000)
        v1(s11, home, clean(person(rng, household="11", residence="11")), to=(), at=now - 4000)
        v1(s44, theirs, clean(person(rng, household="44", residence="11")), to=(s11, nat), at=now - 3000)
        v1(s44, ours, {"children": 2}, to=(s11, nat), at=now - 2000)  # the residence province's v1 write
        for s in (s11, s44):  # drained: their hubs acknowledged everything
            s.set_cursor("push", s.last_seq(), now)
        before = {pid: s11.require("person", pid).values() for pid in (ours, home, theirs)}
        last = s11.last_seq()
    finally:
        for s in (s11, s44, nat):
            s.close()

    fed.start(N11)
    running = yipanqi("upgrade", "v2", "-c", fed.fed.configs[N11])
    assert running.returncode == 1 and "the node seems to be running" in running.stderr
    fed.stop(N11)

    done = yipanqi("upgrade", "v2", "-c", fed.fed.configs[N11], "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"identity": N11, "written": 2, "already": 0, "elsewhere": 1, "conflicted": []}
    s11 = offline(fed, N11)
    try:
        assert {pid: s11.require("person", pid).values() for pid in before} == before
        assert s11.last_seq() == last + 2
        for pid in (ours, home):
            (baseline,) = s11.record_graph("person", pid).held.values()
            assert baseline.legacy and baseline.origin == N11
        assert [e.record_id for e in s11.outbox(last)] == [ours]  # the cross-province one goes to the hub
    finally:
        s11.close()
    again = yipanqi("upgrade", "v2", "-c", fed.fed.configs[N11])
    assert again.returncode == 0, again.stderr
    assert "0 baselines signed, 2 already upgraded, 1 left to their household provinces" in again.stdout

    # Over the v2 wire: 44 and the national hub take 11's baseline, reads stay equal, and the record
    # is writable at 44 (a delta on the baseline) and back at 11.
    for who in [*hubs, N11, N44]:
        fed.start(who)
    fed.quiet()
    assert eventually(lambda: fed.status(N44)["parked"]["deltas"] == 0 and fed.status(N11)["outbox"]["changes"] == 0, 60)
    for who in (N44, NATIONAL):
        got = fed.get(who, ours)
        assert {k: v for k, v in got.items() if k != "_meta"} == {**before[ours], "person_id": ours}, who
    written = fed.write(N44, "update", {"children": 3}, ours)
    fed.arrives(N11, ours, written, timeout=60)
    fed.arrives(NATIONAL, ours, written, timeout=60)

