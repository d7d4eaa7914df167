"""Routing and privacy across real processes: a record reaches exactly the
provinces it involves (and the national database), nothing else."""

from __future__ import annotations

import random

import pytest

from tests.integration.conftest import NODES, Fed, person

NATIONAL = "hub-national"


def assert_nowhere_else(fed: Fed, person_id: str, holders: set[str]) -> None:
    """No node outside ``holders`` has the record: Get is NOT_FOUND, List omits it,
    and no change of it was even offered to that node (not in its quarantine)."""
    for node in NODES:
        if node in holders:
            continue
        assert fed.get(node, person_id) is None, f"{node} holds {person_id} it is not involved in"
        listed = fed.list(node, include_deleted=True)
        assert person_id not in listed, f"{node} lists {person_id} it is not involved in"
        offered = [q for q in fed.quarantine(node) if q["record_id"] == person_id]
        assert offered == [], f"{node} was sent {person_id} it is not involved in: {offered}"
    # No record in this module involves province 13: it holds nothing at all.
    assert fed.list("province-13", include_deleted=True) == {}
    assert fed.quarantine("province-13") == []


def test_cross_province_record_reaches_exactly_its_provinces_and_national(federation: Fed,
                                                                          rng: random.Random) -> None:
    fields = person(rng, household="11", residence="44")
    created = federation.write("province-44", "create", fields)
    pid = created["person_id"]
    assert {k: created[k] for k in fields} == fields

    federation.arrives("province-11", pid, created)
    federation.arrives(NATIONAL, pid, created)
    # It travelled node -> hub-pearl -> hub-national -> hub-bohai -> node 11.
    (row,) = federation.history("province-11", pid)
    assert (row["origin"], row["seq"], row["op"], row["via"]) == ("province-44", row["seq"], "create", "hub-bohai")

    federation.quiet()
    assert_nowhere_else(federation, pid, {"province-11", "province-44"})
    # hub-yangtze serves neither province: the change is not even in its log.
    assert federation.history("hub-yangtze", pid) == []
    assert federation.get("province-44", pid) == created


@pytest.mark.parametrize("mover", ["province-11", "province-44"])
def test_move_to_a_third_province_delivers_the_whole_record(federation: Fed, rng: random.Random,
                                                            mover: str) -> None:
    created = federation.write("province-44", "create", person(rng, household="11", residence="44"))
    pid = created["person_id"]
    federation.arrives("province-11", pid, created)
    # Some history before the move, so the mover's copy is not just the create.
    updated = federation.write("province-44", "update", {"children": 2, "marital_status": "married"}, pid)
    federation.arrives("province-11", pid, updated)
    assert federation.get("province-31", pid) is None

    moved = federation.write(mover, "update", {"residence_province": "31", "residence_city": "上海市"}, pid)
    assert moved["residence_province"] == "31"
    for field in ("id_number", "name", "birth_date", "children", "marital_status", "household_province"):
        assert moved[field] == updated[field]

    # The province moved to gets the whole record, every field and the same version.
    at_31 = federation.arrives("province-31", pid, moved)
    assert at_31["name"] == created["name"] and at_31["id_number"] == created["id_number"]
    assert at_31["children"] == 2
    # The province left (44) and the household province (11) both see the move.
    federation.arrives("province-44", pid, moved)
    federation.arrives("province-11", pid, moved)
    federation.arrives(NATIONAL, pid, moved)

    federation.quiet()
    assert_nowhere_else(federation, pid, {"province-11", "province-31", "province-44"})
    # 31 got the full history it needs to merge later edits, each change once.
    rows = federation.history("province-31", pid)
    assert [(r["origin"], r["seq"]) for r in rows][-1] == (mover, rows[-1]["seq"])
    assert len({(r["origin"], r["seq"]) for r in rows}) == len(rows)


def test_intra_province_record_never_leaves_its_node(federation: Fed, rng: random.Random) -> None:
    local = federation.write("province-44", "create", person(rng, household="44", residence="44"))
    pid = local["person_id"]
    local = federation.write("province-44", "update", {"children": 1}, pid)
    # A cross-province write after it, through the same outbox and hub: a barrier.
    barrier = federation.write("province-44", "create", person(rng, household="45", residence="44"))
    federation.arrives("province-45", barrier["person_id"], barrier)
    federation.arrives(NATIONAL, barrier["person_id"], barrier)
    federation.quiet()

    assert federation.get("province-44", pid) == local
    assert federation.get(NATIONAL, pid) is None
    for hub in ("hub-national", "hub-pearl"):
        assert federation.history(hub, pid) == [], f"{hub} logged an intra-province change"
    assert_nowhere_else(federation, pid, {"province-44"})
    assert [r["via"] for r in federation.history("province-44", pid)] == ["local", "local"]
