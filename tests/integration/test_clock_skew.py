"""Nodes whose wall clocks are hours off still sync, keep causal order and agree on conflicts.

Province 45 runs three hours ahead and province 11 two hours behind (their
configs' ``[timing].clock_offset_s`` shifts the wall clock their processes read,
runtime.clock); 44 and the hubs keep true time. Vector clocks decide causality,
hybrid logical timestamps only break ties between concurrent writes, so:

* records written at the skewed nodes and at the others sync and converge;
* an update made after receiving 45's write wins over it everywhere, even
  when the updater's timestamp is hours *behind* 45's;
* concurrent edits on both sides of a partition become the same open conflict
  on every replica, with the same shown winner (the greatest timestamp, so
  the node whose clock is ahead wins the tie: documented, and visible);
* afterwards every replica of every record is identical.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.launcher import TEST_TIMING, Federation
from tests.integration.conftest import Fed, running, eventually, person
from tests.support.faults import Procs

PROVINCES = ["11", "44", "45"]
SKEW_S = {"province-45": 10800, "province-11": -7200}  # 3 h ahead, 2 h behind
NATIONAL = "hub-national"
HUBS = ("hub-national", "hub-bohai", "hub-pearl")  # every hub between 11, 44 and 45 (national is also the fallback)


@pytest.fixture
def skewed(tmp_path: Path) -> Iterator[tuple[Fed, Procs]]:
    fed = Fed(Federation.create(tmp_path / "fed", PROVINCES))
    for identity, seconds in SKEW_S.items():
        fed.fed.set_timing(identity, {**TEST_TIMING, "clock_offset_s": seconds})
    procs = Procs(fed.fed)
    with running(fed, lambda: (procs.start_all(), fed.wait_linked(60)), stop=procs.thaw_all):
        yield fed, procs


def holders(rec: dict[str, Any]) -> list[str]:
    provinces = sorted({rec["household_province"], rec["residence_province"]})
    return [f"province-{p}" for p in provinces] + [NATIONAL]


def everywhere(fed: Fed, rec: dict[str, Any], timeout: float = 60) -> None:
    for identity in holders(rec):
        fed.arrives(identity, rec["person_id"], rec, timeout=timeout)


def stamps(fed: Fed, identity: str, pid: str) -> list[tuple[str, int, int]]:
    """(origin, seq, at_ms) of a record's changes as ``identity`` holds them."""
    return [(r["origin"], r["seq"], r["at_ms"]) for r in fed.history(identity, pid)]


def test_skewed_clocks_sync_keep_causal_order_and_agree_on_conflicts(skewed: tuple[Fed, Procs],
                                                                      rng: random.Random) -> None:
    fed, procs = skewed
    say = lambda line: print(f"[clock-skew] {line}", flush=True)  # noqa: E731

    # -- 1. a causal update wins over a write from a clock hours ahead ------------------------------------
    # 45 (3 h ahead) creates; 11 (2 h behind) receives it, then updates it. 11 is restarted in between:
    # a restarted node's hybrid clock starts again from its own last write (it has none), so its
    # update's timestamp is ~5 hours *behind* 45's. Only the vector clock can order them, and it must.
    # (Were the hybrid clock to survive restarts, the update's timestamp would be past 45's instead,
    # which is fine too: either way the update must win.)
    r1 = fed.write("province-45", "create", {**person(rng, household="11", residence="45"),
                                             "residence_city": "南宁市 (45)"})
    everywhere(fed, r1)
    procs.sigkill("province-11")
    procs.restart("province-11")
    fed.close()  # channels are made afresh (11 was restarted)
    r1_11 = fed.write("province-11", "update", {"residence_city": "北京市 (11, after 45)"}, r1["person_id"])
    assert r1_11["_meta"]["conflicts"] == {}
    everywhere(fed, r1_11)
    (_, _, at_45), (_, _, at_11) = stamps(fed, "province-45", r1["person_id"])
    say(f"causal: 45 wrote at {at_45}, 11 updated at {at_11} ({(at_11 - at_45) / 3600_000:+.2f} h): "
        f"11's later update wins everywhere")
    real_ms = time.time_ns() // 1_000_000
    assert abs(at_45 - real_ms - 10800_000) < 600_000, f"45's clock is not 3 h ahead: at {at_45}, now {real_ms}"
    assert abs(at_11 - real_ms + 7200_000) < 600_000 or at_11 >= at_45, \
        f"11's clock is not 2 h behind: at {at_11}, now {real_ms}"
    for identity in holders(r1):
        got = fed.get(identity, r1["person_id"])
        assert got["residence_city"] == "北京市 (11, after 45)" and got["_meta"]["conflicts"] == {}, (identity, got)

    # 44 (true time) receives 45's write and updates it without a restart (its HLC has seen 45's time).
    r2 = fed.write("province-45", "create", {**person(rng, household="45", residence="44"),
                                             "residence_city": "柳州市 (45)"})
    everywhere(fed, r2)
    r2_44 = fed.write("province-44", "update", {"residence_city": "广州市 (44, after 45)"}, r2["person_id"])
    everywhere(fed, r2_44)
    (_, _, a45), (_, _, a44) = stamps(fed, "province-44", r2["person_id"])
    say(f"causal: 45 wrote at {a45}, 44 updated at {a44} ({(a44 - a45) / 3600_000:+.2f} h): 44's update wins")
    for identity in holders(r2):
        got = fed.get(identity, r2["person_id"])
        assert got["residence_city"] == "广州市 (44, after 45)" and got["_meta"]["conflicts"] == {}, (identity, got)

    # -- 2. records written at skewed and unskewed nodes sync and converge -------------------------------
    written: list[tuple[str, dict[str, Any]]] = []
    for origin, household, residence in [("45", "45", "44"), ("45", "11", "45"), ("45", "45", "11"),
                                         ("11", "11", "44"), ("11", "45", "11"), ("11", "11", "45"),
                                         ("44", "44", "11"), ("44", "45", "44"), ("44", "44", "45")]:
        rec = fed.write(f"province-{origin}", "create", person(rng, household=household, residence=residence))
        rec = fed.write(f"province-{origin}", "update", {"children": 1 + len(written) % 3}, rec["person_id"])
        written.append((origin, rec))
    for _, rec in written:
        everywhere(fed, rec)
    final = []
    for origin, rec in written:  # then an update by the other province involved, after it received the record
        other = next(p for p in (rec["household_province"], rec["residence_province"]) if p != origin)
        final.append(fed.write(f"province-{other}", "update", {"marital_status": "married"}, rec["person_id"]))
    for rec in final:
        assert rec["_meta"]["conflicts"] == {}
        everywhere(fed, rec)
    say(f"sync: {len(final)} records written at 45 (+3 h), 11 (-2 h) and 44, updated at both ends, "
        f"identical everywhere")

    # -- 3. concurrent edits while partitioned: one conflict, one winner, everywhere -------------------------
    c1 = fed.write("province-45", "create", {**person(rng, household="11", residence="45"),
                                             "residence_city": "南宁市"})
    c2 = fed.write("province-44", "create", {**person(rng, household="45", residence="44"),
                                             "residence_city": "广州市"})
    everywhere(fed, c1)
    everywhere(fed, c2)
    for hub in HUBS:
        procs.freeze(hub)  # SIGSTOP: 11, 44 and 45 can reach no one, and nobody notices at once
    try:
        fed.write("province-45", "update", {"residence_city": "柳州市 (45)"}, c1["person_id"])
        fed.write("province-11", "update", {"residence_city": "北京市 (11)", "marital_status": "divorced"},
                  c1["person_id"])
        fed.write("province-44", "update", {"residence_city": "深圳市 (44)"}, c2["person_id"])
        fed.write("province-45", "update", {"residence_city": "桂林市 (45)", "children": 2}, c2["person_id"])
        time.sleep(1)
    finally:
        for hub in HUBS:
            procs.thaw(hub)

    def one_conflict(rec: dict[str, Any]) -> dict[str, Any] | None:
        copies = [fed.get(identity, rec["person_id"]) for identity in holders(rec)]
        first = copies[0]
        if first is None or any(c != first for c in copies) or "residence_city" not in first["_meta"]["conflicts"]:
            return None
        return first

    for rec, values, writers, one_sided in [
        (c1, {"柳州市 (45)", "北京市 (11)"}, {"province-45", "province-11"}, {"marital_status": "divorced"}),
        (c2, {"深圳市 (44)", "桂林市 (45)"}, {"province-44", "province-45"}, {"children": 2}),
    ]:
        merged = eventually(lambda: one_conflict(rec), 90, interval=0.5,
                            message=lambda: f"{[fed.get(i, rec['person_id']) for i in holders(rec)]}")
        versions = merged["_meta"]["conflicts"]["residence_city"]
        assert set(merged["_meta"]["conflicts"]) == {"residence_city"}, merged["_meta"]["conflicts"]
        assert {v["value"] for v in versions} == values
        assert {v["writer"] for v in versions} == writers
        winner = versions[0]
        assert merged["residence_city"] == winner["value"]
        # The documented rule: the greatest hybrid timestamp wins; 45's clock is hours ahead, so 45 wins.
        assert winner["at_ms"] == max(v["at_ms"] for v in versions)
        assert winner["writer"] == "province-45", versions
        for name, value in one_sided.items():  # a field only one side wrote merges cleanly
            assert merged[name] == value
        say(f"conflict on {rec['person_id']}: {[(v['writer'], v['value'], v['at_ms']) for v in versions]}; "
            f"shown everywhere: {winner['value']!r} by {winner['writer']}")

    # -- 4. convergence holds: every replica of every record identical, nothing foreign, nothing refused ------
    fed.quiet(timeout=60)
    national = fed.list(NATIONAL, include_deleted=True)
    lists = {f"province-{p}": fed.list(f"province-{p}", include_deleted=True) for p in PROVINCES}
    for pid, rec in national.items():
        for identity in holders(rec)[:-1]:
            assert lists[identity].get(pid) == rec, f"{pid} at {identity}: {lists[identity].get(pid)} != {rec}"
    for identity, records in lists.items():
        for pid, rec in records.items():
            assert identity.split("-")[1] in (rec["household_province"], rec["residence_province"]), (identity, rec)
            assert national.get(pid) == rec
    for identity in fed.fed.configs:
        assert fed.quarantine(identity) == [], f"{identity} quarantined changes"
    say(f"converged: {len(national)} records at the national hub, identical at every province involved")
