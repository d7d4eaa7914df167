"""Concurrent edits on both sides of a partition become one open conflict,
identical everywhere after healing; settling it at one province clears it
everywhere."""

from __future__ import annotations

import random
from datetime import date

from core.idnumber import make_id_number
from tests.integration.conftest import Fed, eventually, person, yipanqi

NATIONAL = "hub-national"
# Every hub on the paths between 44 and 11 (the national hub is also both nodes' fallback).
PATH_HUBS = ("hub-pearl", "hub-bohai", "hub-national")


def _same_everywhere(fed: Fed, pid: str, where: tuple[str, ...]) -> dict | None:
    copies = [fed.get(identity, pid) for identity in where]
    return copies[0] if copies[0] is not None and all(c == copies[0] for c in copies) else None


def test_partitioned_concurrent_edits_converge_to_one_conflict_then_settle(fresh_federation: Fed,
                                                                           rng: random.Random) -> None:
    fed = fresh_federation
    everywhere = ("province-44", "province-11", NATIONAL)
    created = fed.write("province-44", "create", {**person(rng, household="11", residence="44"),
                                                  "residence_city": "广州市", "marriage_cert_status": "requested"})
    pid = created["person_id"]
    fed.arrives("province-11", pid, created)
    fed.arrives(NATIONAL, pid, created)

    for hub in PATH_HUBS:
        fed.stop(hub)  # SIGTERM: 44 and 11 are now cut off from each other

    at_44 = fed.write("province-44", "update", {"residence_city": "深圳市"}, pid)
    at_11 = fed.write("province-11", "update", {"residence_city": "东莞市", "marriage_cert_status": "issued"}, pid)
    assert at_44["_meta"]["conflicts"] == {} and at_11["_meta"]["conflicts"] == {}
    assert fed.get("province-44", pid)["residence_city"] == "深圳市"
    assert fed.get("province-11", pid)["residence_city"] == "东莞市"

    for hub in PATH_HUBS[::-1]:  # national first, then the regional hubs
        fed.start(hub)

    def healed() -> dict | None:
        state = _same_everywhere(fed, pid, everywhere)
        return state if state and "residence_city" in state["_meta"]["conflicts"] else None

    merged = eventually(healed, 60, interval=0.5,
                        message=lambda: f"not converged: {[fed.get(i, pid) for i in everywhere]}")
    conflict = merged["_meta"]["conflicts"]
    assert set(conflict) == {"residence_city"}, conflict
    versions = conflict["residence_city"]
    assert sorted(v["value"] for v in versions) == ["东莞市", "深圳市"]
    assert {v["writer"] for v in versions} == {"province-44", "province-11"}
    assert merged["residence_city"] == versions[0]["value"]  # the shown value is the listed winner
    # The field only one side touched merges cleanly; the clock reflects both writers.
    assert merged["marriage_cert_status"] == "issued"
    assert merged["_meta"]["clock"] == {"province-44": 2, "province-11": 1}
    for identity in ("province-44", "province-11"):
        assert pid in fed.list(identity, conflicted_only=True)
        assert fed.status(identity)["conflicts"] == 1

    settled = fed.write("province-44", "settle", {"residence_city": "深圳市"}, pid)
    assert settled["_meta"]["conflicts"] == {}
    assert settled["residence_city"] == "深圳市"
    for identity in everywhere:
        fed.arrives(identity, pid, settled, timeout=45)
    for identity in ("province-44", "province-11"):
        assert pid not in fed.list(identity, conflicted_only=True)
        assert fed.status(identity)["conflicts"] == 0
    assert fed.status(NATIONAL)["conflicts"] == 0


def test_a_rule_that_only_merging_broke_is_a_conflict_on_both_fields_then_settles(fresh_federation: Fed,
                                                                                  rng: random.Random) -> None:
    """Issue 11: cross-field rules broken only by merging concurrent deltas show as conflicts, never
    as refusals. 44 corrects the birth date (with the id_number that encodes it); 11, cut off, records
    a move-in date between the old birth date and the new one. Each write keeps every rule where it
    was made; merged, moved_in_on is before birth_date."""
    fed = fresh_federation
    everywhere = ("province-44", "province-11", NATIONAL)
    fields = person(rng, household="11", residence="44")
    area = str(fields["id_number"])[:6]
    fields.update(birth_date="2001-06-19", sex="M", id_number=make_id_number(area, date(2001, 6, 19), 1))
    fields.pop("moved_in_on", None)
    created = fed.write("province-44", "create", fields)
    pid = created["person_id"]
    fed.arrives("province-11", pid, created)
    fed.arrives(NATIONAL, pid, created)

    for hub in PATH_HUBS:
        fed.stop(hub)
    fed.write("province-44", "update", {"birth_date": "2005-03-04",
                                        "id_number": make_id_number(area, date(2005, 3, 4), 1)}, pid)
    fed.write("province-11", "update", {"moved_in_on": "2003-01-01"}, pid)
    for hub in PATH_HUBS[::-1]:
        fed.start(hub)

    def healed() -> dict | None:
        state = _same_everywhere(fed, pid, everywhere)
        return state if state and state["_meta"]["conflicts"] else None

    merged = eventually(healed, 60, interval=0.5,
                        message=lambda: f"not converged: {[fed.get(i, pid) for i in everywhere]}")
    assert (merged["birth_date"], merged["moved_in_on"]) == ("2005-03-04", "2003-01-01")  # both kept: no refusal
    conflict = merged["_meta"]["conflicts"]
    assert set(conflict) == {"birth_date", "moved_in_on"}, conflict
    assert conflict["moved_in_on"][0]["rule"] == ("moved_in_on must not be before birth_date; "
                                                   "the two were written concurrently"), conflict
    for identity in ("province-44", "province-11"):
        assert pid in fed.list(identity, conflicted_only=True)
        assert fed.status(identity)["conflicts"] == 1
    listed = yipanqi("conflicts", "list", "-c", fed.fed.configs["province-44"], env={"COLUMNS": "250"})
    assert listed.returncode == 0, listed.stderr
    assert "breaks a rule: moved_in_on must not be before birth_date" in listed.stdout, listed.stdout

    settled = fed.write("province-11", "settle", {"moved_in_on": "2006-01-01"}, pid)
    assert settled["_meta"]["conflicts"] == {}
    for identity in everywhere:
        fed.arrives(identity, pid, settled, timeout=45)
    for identity in ("province-44", "province-11"):
        assert pid not in fed.list(identity, conflicted_only=True)
        assert fed.status(identity)["conflicts"] == 0
    assert fed.status(NATIONAL)["conflicts"] == 0
