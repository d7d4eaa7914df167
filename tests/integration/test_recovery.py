"""A node that lost its database comes back: ``yipanqi node rebuild`` (from the
national database) and ``yipanqi node backup`` / ``node restore`` (from a
backup, then catching up from the national hub), against real processes.

After either, the node holds what the federation holds for it, resumes syncing
without applying or pushing anything twice, and never reuses a sequence number
the federation has seen (no equivocation quarantined anywhere).

Each test runs its own small federation: provinces 11, 44, 45 (hub-national,
hub-bohai, hub-pearl).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Fed, small_federation, eventually, person, yipanqi_ok

PROVINCES = ["11", "44", "45"]
N11, N44, N45 = "province-11", "province-44", "province-45"
NATIONAL, BOHAI, PEARL = "hub-national", "hub-bohai", "hub-pearl"
HUB_IDS = (NATIONAL, BOHAI, PEARL)
SLOW = 60  # generous: the machine is shared


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    with small_federation(tmp_path / "fed", PROVINCES) as f:
        yield f


def node_db(fed: Fed, code: str) -> Path:
    return fed.root / "nodes" / code / "node.db"


def drop_database(fed: Fed, code: str) -> None:
    db = node_db(fed, code)
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    assert not db.exists()


def history_keys(fed: Fed, identity: str, pid: str) -> list[tuple[Any, ...]]:
    """(origin, seq, op, operator, at_ms) of every change of ``pid`` at ``identity``; each (origin, seq) once."""
    rows = fed.history(identity, pid)
    keys = [(r["origin"], r["seq"]) for r in rows]
    assert len(keys) == len(set(keys)), f"{identity} applied a change of {pid} twice: {keys}"
    return sorted((r["origin"], r["seq"], r["op"], r["operator"], r["at_ms"]) for r in rows)


def no_equivocation_anywhere(fed: Fed) -> None:
    for identity in HUB_IDS + (N11, N44, N45):
        rows = fed.quarantine(identity)
        assert rows == [], f"{identity} quarantined changes: {rows}"
        assert fed.status(identity)["equivocating"] == {}, f"{identity} flags an honest restore as equivocation"


def holders(rec: dict[str, Any]) -> set[str]:
    provinces = {rec["household_province"], rec["residence_province"]}
    return {f"province-{p}" for p in provinces if p in PROVINCES}


# -- rebuild from the national database ----------------------------------------------------------


def test_rebuild_brings_back_every_cross_province_record_and_resumes_sync(fed: Fed,
                                                                         rng: random.Random) -> None:
    # Records involving 44, written at 44, 11 and 45, edited from several places.
    a = fed.write(N44, "create", person(rng, household="11", residence="44"))
    b = fed.write(N44, "create", person(rng, household="45", residence="44"))
    c = fed.write(N44, "create", person(rng, household="44", residence="45"))
    intra1 = fed.write(N44, "create", person(rng, household="44", residence="44"))
    d = fed.write(N11, "create", person(rng, household="11", residence="44"))
    e = fed.write(N45, "create", person(rng, household="45", residence="44"))
    moved = fed.write(N44, "create", person(rng, household="11", residence="44"))
    fed.arrives(N11, a["person_id"], a, timeout=SLOW)
    fed.arrives(N45, b["person_id"], b, timeout=SLOW)
    fed.arrives(N44, d["person_id"], d, timeout=SLOW)
    fed.arrives(N44, e["person_id"], e, timeout=SLOW)
    fed.arrives(N11, moved["person_id"], moved, timeout=SLOW)
    a2 = fed.write(N44, "update", {"children": 3, "residence_city": "深圳市"}, a["person_id"])
    b2 = fed.write(N45, "update", {"marital_status": "married"}, b["person_id"])
    intra1 = fed.write(N44, "update", {"children": 1}, intra1["person_id"])
    fed.arrives(N44, b["person_id"], b2, timeout=SLOW)
    # 11 moves a person from 44 to 45: 44 learns they left; what 45 writes after that is none of 44's business.
    gone = fed.write(N11, "update", {"residence_province": "45", "residence_city": "南宁市"}, moved["person_id"])
    fed.arrives(N44, moved["person_id"], gone, timeout=SLOW)
    fed.arrives(N45, moved["person_id"], gone, timeout=SLOW)
    later = fed.write(N45, "update", {"children": 4}, moved["person_id"])
    fed.arrives(N11, moved["person_id"], later, timeout=SLOW)
    intra2 = fed.write(N44, "create", person(rng, household="44", residence="44"))  # 44's last write: intra
    fed.quiet(SLOW)

    cross = {r["person_id"]: r for r in (a2, b2, c, d, e, gone)}
    others = {a["person_id"]: N11, b["person_id"]: N45, c["person_id"]: N45, d["person_id"]: N11,
              e["person_id"]: N45}
    for pid, rec in cross.items():  # the federation agrees on what 44 holds
        assert fed.get(N44, pid) == rec
        if pid in others:
            assert fed.get(others[pid], pid) == rec
            assert fed.get(NATIONAL, pid) == rec
    assert fed.get(N44, moved["person_id"]) != fed.get(NATIONAL, moved["person_id"]) == later
    histories = {pid: history_keys(fed, N44, pid) for pid in cross}
    assert histories[a["person_id"]][0][:2] == (N44, 1)
    st = fed.status(N44)
    last_seq, cross_changes = st["last_seq"], sum(len(h) for h in histories.values())
    own_shared = max(seq for h in histories.values() for origin, seq, *_ in h if origin == N44)
    assert last_seq > own_shared  # the intra-province writes came last

    # The disk is gone.
    fed.stop(N44)
    drop_database(fed, "44")
    out = yipanqi_ok("node", "rebuild", "-c", str(fed.fed.configs[N44]))
    m = re.search(r"rebuilt province-44 from the national database and its hubs: (\d+) changes applied", out)
    assert m, out
    assert int(m.group(1)) == cross_changes, out

    fed.start(N44)
    eventually(lambda: fed.status(N44)["hub"]["connected"], SLOW)
    for pid, rec in cross.items():
        assert fed.get(N44, pid) == rec, pid
        assert history_keys(fed, N44, pid) == histories[pid], pid
    # Documented: intra-province records exist nowhere else and cannot be rebuilt (restore a backup).
    assert fed.get(N44, intra1["person_id"]) is None
    assert fed.get(N44, intra2["person_id"]) is None
    st = fed.status(N44)
    assert st["records"] == len(cross) and st["quarantined"] == 0
    assert st["last_seq"] == own_shared and st["outbox"]["changes"] == 0  # nothing to push again

    # New writes at 44 sync both ways, once.
    f = fed.write(N44, "create", person(rng, household="44", residence="11"))
    g = fed.write(N44, "create", person(rng, household="45", residence="44"))
    a3 = fed.write(N44, "update", {"children": 5}, a["person_id"])
    c2 = fed.write(N45, "update", {"residence_city": "柳州市"}, c["person_id"])
    final = {f["person_id"]: f, g["person_id"]: g, a["person_id"]: a3, c["person_id"]: c2}
    for pid, rec in final.items():
        for identity in holders(rec) | {NATIONAL}:
            fed.arrives(identity, pid, rec, timeout=SLOW)
    fed.quiet(SLOW)
    for pid in set(cross) | set(final):
        for identity in (N11, N44, N45, NATIONAL):
            history_keys(fed, identity, pid)
    assert [(o, s) for o, s, *_ in history_keys(fed, N11, f["person_id"])] == [(N44, own_shared + 1)]
    no_equivocation_anywhere(fed)


# -- backup and restore ------------------------------------------------------------------------------


def test_restore_from_a_backup_then_catch_up_from_the_federation(fed: Fed, rng: random.Random,
                                                                 tmp_path: Path) -> None:
    x1 = fed.write(N44, "create", person(rng, household="44", residence="45"))
    y1 = fed.write(N44, "create", person(rng, household="44", residence="44"))
    z1 = fed.write(N45, "create", person(rng, household="45", residence="44"))
    fed.arrives(N45, x1["person_id"], x1, timeout=SLOW)
    fed.arrives(N44, z1["person_id"], z1, timeout=SLOW)

    backup = tmp_path / "node44-backup.db"
    out = yipanqi_ok("node", "backup", "-c", str(fed.fed.configs[N44]), str(backup))  # while it runs
    assert "backed up province-44" in out and backup.stat().st_size > 0

    # After the backup: 44 writes more, and receives more from 45.
    x2 = fed.write(N44, "create", person(rng, household="11", residence="44"))
    x1b = fed.write(N44, "update", {"children": 2}, x1["person_id"])
    z2 = fed.write(N45, "create", person(rng, household="45", residence="44"))
    z1b = fed.write(N45, "update", {"residence_city": "珠海市"}, z1["person_id"])
    for identity, pid, rec in ((N11, x2["person_id"], x2), (N45, x1["person_id"], x1b),
                               (N44, z2["person_id"], z2), (N44, z1["person_id"], z1b)):
        fed.arrives(identity, pid, rec, timeout=SLOW)
    fed.quiet(SLOW)
    held = fed.list(N44)
    assert set(held) == {x1["person_id"], y1["person_id"], z1["person_id"], x2["person_id"], z2["person_id"]}
    histories = {pid: history_keys(fed, N44, pid) for pid in held}
    last_seq = fed.status(N44)["last_seq"]

    fed.stop(N44)
    out = yipanqi_ok("node", "restore", "-c", str(fed.fed.configs[N44]), str(backup))
    assert "restored province-44" in out and "rebuilt province-44" in out, out

    fed.start(N44)
    eventually(lambda: fed.status(N44)["hub"]["connected"], SLOW)
    assert fed.list(N44) == held  # the backup, plus what came back from the federation (its own writes too)
    for pid in held:
        assert history_keys(fed, N44, pid) == histories[pid], pid
    st = fed.status(N44)
    assert st["last_seq"] == last_seq and st["outbox"]["changes"] == 0 and st["quarantined"] == 0

    # New writes continue after every sequence number the federation has seen.
    w = fed.write(N44, "create", person(rng, household="44", residence="45"))
    x2b = fed.write(N44, "update", {"children": 4}, x2["person_id"])
    z2b = fed.write(N45, "update", {"children": 1}, z2["person_id"])
    for pid, rec in ((w["person_id"], w), (x2["person_id"], x2b), (z2["person_id"], z2b)):
        for identity in holders(rec) | {NATIONAL}:
            fed.arrives(identity, pid, rec, timeout=SLOW)
    assert [(o, s) for o, s, *_ in history_keys(fed, N45, w["person_id"])] == [(N44, last_seq + 1)]
    fed.quiet(SLOW)
    for pid in set(held) | {w["person_id"]}:
        for identity in (N11, N44, N45, NATIONAL):
            history_keys(fed, identity, pid)
    no_equivocation_anywhere(fed)
    assert fed.get(N44, y1["person_id"]) == held[y1["person_id"]]  # intra-province: from the backup
