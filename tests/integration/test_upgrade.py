"""`yipanqi upgrade v2` on real node processes and their stores (issue 10's baseline upgrade).

A federation of 11 and 44 writes records over the v1 wire and drains. The upgrade refuses a
running node, and a stopped node whose outbox its hub has not acknowledged, each with the
reason and without writing. At a drained, stopped node it signs one baseline per record whose
household is its province, leaves the others to their household, keeps every read equal, and a
second run writes nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import canonical
from store.store import Store
from tests.integration.conftest import Fed, eventually, person, small_federation, yipanqi

N11, N44, PEARL, NATIONAL = "province-11", "province-44", "hub-pearl", "hub-national"


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    with small_federation(tmp_path / "fed", ["11", "44"]) as f:
        yield f


def offline(fed: Fed, code: str) -> Store:
    return Store.open(f"sqlite:///{fed.root / 'nodes' / code / 'node.db'}", owner=f"province-{code}")


def test_upgrade_v2_signs_the_households_baselines_on_a_drained_stopped_node(fed: Fed, rng: random.Random) -> None:
    ours = fed.write(N11, "create", person(rng, household="11", residence="44"))["person_id"]
    home = fed.write(N11, "create", person(rng, household="11", residence="11"))["person_id"]
    theirs = fed.write(N44, "create", person(rng, household="44", residence="11"))["person_id"]
    eventually(lambda: fed.get(N44, ours) is not None)
    fed.write(N44, "update", {"children": 2}, record_id=ours)  # the residence province's v1 write
    fed.quiet()
    eventually(lambda: fed.status(N11)["outbox"]["changes"] == 0 and fed.get(N11, ours)["children"] == 2)

    running = yipanqi("upgrade", "v2", "-c", fed.fed.configs[N11])
    assert running.returncode == 1 and "the node seems to be running" in running.stderr

    fed.stop(N11)
    for hub in (PEARL, NATIONAL):  # 44's hub and its fallback: what 44 writes now stays unacknowledged
        fed.stop(hub)
    fed.write(N44, "update", {"children": 3}, record_id=theirs)
    fed.stop(N44)
    stuck = yipanqi("upgrade", "v2", "-c", fed.fed.configs[N44])
    assert stuck.returncode == 1
    assert "the outbox holds 1 change the hub has not acknowledged" in stuck.stderr
    s44 = offline(fed, "44")
    try:
        assert [canonical.loads(e.body)["v"] for e in s44.history("person", theirs)] == [1, 1]  # no delta written
    finally:
        s44.close()

    s11 = offline(fed, "11")
    before = {pid: s11.require("person", pid).values() for pid in (ours, home, theirs)}
    last = s11.last_seq()
    s11.close()
    done = yipanqi("upgrade", "v2", "-c", fed.fed.configs[N11], "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"identity": N11, "written": 2, "already": 0, "elsewhere": 1, "conflicted": []}
    s11 = offline(fed, "11")
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
