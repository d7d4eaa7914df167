"""The operator's view of a running federation, through the `yipanqi` command.

Every command runs as a real subprocess (``python -m cli.main ...``) against
real node and hub processes; the figures it prints are checked against what
the test wrote. Setup writes go through the Admin API (``Fed.write``) where
the command itself is not what is being tested.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.provinces import DEFAULT_REGIONS
from tests.integration.conftest import NODES, PROVINCES, Fed, eventually, person, yipanqi
from tests.integration.conftest import yipanqi_ok as ok

REGION_OF = {p: r for r, ps in DEFAULT_REGIONS.items() for p in ps}

# What status says a node's hubs quarantined of its own changes when they quarantined none.
NONE_QUARANTINED_UPSTREAM = {"changes": 0, "ranges": [], "last_reason": None, "last_hub": None, "last_ms": None}


# -- the command ---------------------------------------------------------------------

def ok_json(*args: object) -> Any:
    return json.loads(ok(*args, "--json"))


def cfg(fed: Fed, identity: str) -> Path:
    return fed.fed.configs[identity]


def status(fed: Fed, identity: str) -> dict[str, Any]:
    return ok_json("status", "-c", cfg(fed, identity))


def row_for(doc: dict[str, Any], peer: str) -> dict[str, Any]:
    rows = [d for d in doc["destinations"] if d["peer"] == peer]
    assert len(rows) == 1, doc["destinations"]
    return rows[0]


# -- status figures -------------------------------------------------------------------

def test_status_shows_a_queue_for_a_stopped_node_then_it_drains(fresh_federation: Fed,
                                                               rng: random.Random) -> None:
    fed = fresh_federation
    fed.kill("province-45", signal.SIGTERM)
    # A record not involving 45 is not queued for it (nor pushed at all: it never leaves 44).
    fed.write("province-44", "create", person(rng, household="44", residence="44"))
    creates, updates = 5, 20
    n = creates + updates
    ids = [fed.write("province-44", "create", person(rng, household="45", residence="44"))["person_id"]
           for _ in range(creates)]
    for i in range(updates):
        fed.write("province-44", "update", {"children": i % 4, "residence_city": rng.choice(["广州市", "深圳市"])},
                  ids[i % creates])

    eventually(lambda: fed.destination("hub-pearl", "province-45")["queue"] == n, 30,
               message=lambda: f"hub-pearl -> 45: {fed.destination('hub-pearl', 'province-45')}, want {n}")
    time.sleep(0.05)  # so the oldest queued change is measurably old
    hub = status(fed, "hub-pearl")
    assert hub["role"] == "hub" and hub["identity"] == "hub-pearl"
    row = row_for(hub, "province-45")
    assert row["queue"] == n
    assert row["oldest_age_s"] is not None and row["oldest_age_s"] > 0
    assert row["connected"] is False
    assert row_for(hub, "province-44")["queue"] == 0  # 44 never gets its own changes back
    assert row_for(hub, "province-44")["connected"] is True
    assert hub["upstream"]["connected"] is True and hub["upstream"]["hub"] == "national"

    def handed_over() -> dict:
        doc = status(fed, "province-44")
        return doc if doc["acked_seq"] == doc["last_seq"] else {}

    node = eventually(handed_over, 30, message="province-44's outbox was not acknowledged")
    assert node["last_seq"] == n + 1
    assert node["outbox"] == {"changes": 0, "oldest_age_s": None, "quarantined": NONE_QUARANTINED_UPSTREAM}
    # A change that never leaves the node leaves nothing owed: acked_seq moves past it too.
    fed.write("province-44", "create", person(rng, household="44", residence="44"))
    node = eventually(handed_over, 30, message="acked_seq stayed behind an intra-province write")
    assert node["last_seq"] == n + 2 and node["outbox"]["changes"] == 0
    assert node["records"] == creates + 2

    # Nor does the national hub owe hub-pearl what came up from pearl: its ack moves past all of it.
    def nothing_owed() -> dict:
        doc = status(fed, "hub-national")
        row = row_for(doc, "hub-pearl")
        return row if doc["log_lsn"] >= n and row["acked"] == doc["log_lsn"] and row["queue"] == 0 else {}

    eventually(nothing_owed, 30, message=lambda: f"national -> pearl: {row_for(status(fed, 'hub-national'), 'hub-pearl')}")

    fed.start("province-45")
    eventually(lambda: fed.destination("hub-pearl", "province-45")["queue"] == 0, 45,
               message=lambda: f"queue did not drain: {fed.destination('hub-pearl', 'province-45')}")
    hub = status(fed, "hub-pearl")
    row = row_for(hub, "province-45")
    assert row["queue"] == 0 and row["oldest_age_s"] is None and row["connected"] is True
    assert row["acked"] > 0
    want = {pid: fed.get("province-44", pid) for pid in ids}
    have = {r["person_id"]: r for r in ok_json("person", "list", "-c", cfg(fed, "province-45"))}
    assert set(have) == set(want)
    for pid, record in want.items():
        assert have[pid] == {k: v for k, v in record.items() if k != "_meta"}
    at45 = status(fed, "province-45")
    assert at45["records"] == creates
    assert at45["origins"]["province-44"]["last_seq"] == n + 1  # 44's seq 1 was not routed to 45

    # Home hub down: 44 syncs through its fallback (the national hub) and says so.
    fed.kill("hub-pearl", signal.SIGTERM)

    def on_fallback() -> dict:
        doc = status(fed, "province-44")["hub"]
        return doc if doc["connected"] and doc["fallback"] else {}

    link = eventually(on_fallback, 40, interval=0.5,
                      message=lambda: f"province-44 link: {fed.status('province-44')['hub']}")
    assert link["hub"] == "national" and link["home"] == "pearl" and link["fallback"] is True
    assert link["connected"] is True and link["up_since_ms"] is not None and link["down_since_ms"] is None
    human = ok("status", "-c", cfg(fed, "province-44"))
    assert "hub-national" in human and "fallback" in human


def test_node_status_fields_after_known_writes(federation: Fed, rng: random.Random) -> None:
    fed = federation
    fed.quiet()
    before44, before11 = fed.status("province-44"), fed.status("province-11")
    start_ms = int(time.time() * 1000)

    local = fed.write("province-44", "create", person(rng, household="44", residence="44"))  # stays at 44
    mine = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    fed.write("province-44", "update", {"children": 2}, mine["person_id"])
    theirs = fed.write("province-11", "create", person(rng, household="11", residence="44"))
    fed.arrives("province-44", theirs["person_id"], theirs)
    fed.quiet()

    doc = status(fed, "province-44")
    assert doc["role"] == "node" and doc["identity"] == "province-44"
    assert doc["last_seq"] == before44["last_seq"] + 3
    assert doc["acked_seq"] == doc["last_seq"]
    assert doc["outbox"] == {"changes": 0, "oldest_age_s": None, "quarantined": NONE_QUARANTINED_UPSTREAM}
    assert doc["records"] == before44["records"] + 3
    assert doc["records"] == len(ok_json("person", "list", "-c", cfg(fed, "province-44")))
    assert doc["conflicts"] == 0 and doc["quarantined"] == 0
    assert "province-44" not in doc["origins"]  # only other origins
    from11 = doc["origins"]["province-11"]
    assert from11["last_seq"] == fed.status("province-11")["last_seq"] == before11["last_seq"] + 1
    assert start_ms <= from11["last_write_ms"] <= from11["received_ms"] <= int(time.time() * 1000)
    assert from11["lag_s"] == pytest.approx((from11["received_ms"] - from11["last_write_ms"]) / 1000, abs=0.002)
    assert 0 <= from11["lag_s"] < 30
    link = doc["hub"]
    assert link["connected"] is True and link["hub"] == "pearl" and link["home"] == "pearl"
    assert link["fallback"] is False and link["last_error"] is None and link["down_since_ms"] is None
    assert link["up_since_ms"] <= int(time.time() * 1000)

    at11 = status(fed, "province-11")
    assert at11["hub"]["hub"] == "bohai" and at11["hub"]["fallback"] is False
    assert at11["origins"]["province-44"]["last_seq"] == before44["last_seq"] + 3  # the update of `mine`
    assert at11["acked_seq"] == at11["last_seq"]
    assert fed.get("province-11", local["person_id"]) is None

    human = ok("status", "-c", cfg(fed, "province-44"))
    assert "province-44 sync status" in human and "up to hub-pearl" in human
    assert "province-11" in human  # the per-origin table


def test_national_status_has_one_row_per_province(federation: Fed, rng: random.Random) -> None:
    fed = federation
    fed.write("province-31", "create", person(rng, household="31", residence="13"))
    fed.quiet()
    every = sorted(REGION_OF)

    def reported() -> dict:
        doc = fed.status("hub-national")
        rows = {r["province"]: r for r in doc["federation"]}
        for code in PROVINCES:
            r, own = rows.get(code), fed.status(f"province-{code}")
            if not r or not r["connected"] or r["backlog"] != 0 or r["records"] != own["records"] \
                    or r["conflicts"] != own["conflicts"]:
                return {}  # not yet: a report is at most 5 s old
        return doc

    eventually(reported, 30, interval=1, message=lambda: f"national federation table: "
               f"{[r for r in fed.status('hub-national')['federation'] if r['province'] in PROVINCES]}")
    doc = status(fed, "hub-national")
    assert doc["role"] == "hub" and doc["identity"] == "hub-national"
    rows = {r["province"]: r for r in doc["federation"]}
    assert sorted(rows) == every and len(doc["federation"]) == len(every)
    for code, r in rows.items():
        assert r["region"] == REGION_OF[code]
        if code in PROVINCES:
            own = fed.status(f"province-{code}")
            assert r["connected"] is True, r
            assert r["records"] == own["records"], (r, own)
            assert r["backlog"] == own["outbox"]["changes"] == 0
            assert r["conflicts"] == own["conflicts"]
            assert r["via"] == f"hub-{REGION_OF[code]}"
            assert r["last_report_age_s"] is not None and r["last_report_age_s"] < 20
        else:
            assert r["connected"] is False, r
            assert r["records"] is None and r["last_report_age_s"] is None
    # The national database: the cross-province records, as the CLI lists them.
    assert doc["records"] == len(ok_json("person", "list", "-c", cfg(fed, "hub-national")))

    human = ok("status", "-c", cfg(fed, "hub-national"))
    assert "the whole federation" in human
    table = human[human.index("the whole federation"):]
    lines = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 2}
    for code in every:
        assert code in lines, f"province {code} missing from:\n{table}"
    for code in PROVINCES:
        assert "yes" in lines[code], lines[code]
    assert "no" in lines["12"]


# -- conflicts ------------------------------------------------------------------------

def test_conflict_is_listed_and_settled_through_the_cli(fresh_federation: Fed, rng: random.Random) -> None:
    fed = fresh_federation
    n44, n11 = cfg(fed, "province-44"), cfg(fed, "province-11")
    created = fed.write("province-44", "create", {**person(rng, household="11", residence="44"),
                                                  "residence_city": "广州市"})
    pid = created["person_id"]
    fed.arrives("province-11", pid, created)
    fed.arrives("hub-national", pid, created)
    fed.quiet()

    # Partition: every hub between 44 and 11 (national is also both nodes' fallback) is frozen.
    frozen = ("hub-pearl", "hub-bohai", "hub-national")
    for hub in frozen:
        fed.fed.procs[hub].send_signal(signal.SIGSTOP)
    try:
        ok("person", "update", "-c", n44, pid, "--set", "residence_city=深圳市")
        ok("person", "update", "-c", n11, pid, "--set", "residence_city=东莞市")
        assert fed.get("province-44", pid)["residence_city"] == "深圳市"
        assert fed.get("province-11", pid)["residence_city"] == "东莞市"
    finally:
        for hub in frozen:
            fed.fed.procs[hub].send_signal(signal.SIGCONT)

    def both_see_it() -> bool:
        return all(pid in fed.list(node, conflicted_only=True) for node in ("province-44", "province-11"))

    eventually(both_see_it, 60, interval=0.5, message="the conflict did not reach both nodes")
    for node in (n44, n11):
        rows = ok_json("conflicts", "list", "-c", node)
        assert [(r["person_id"], r["field"]) for r in rows] == [(pid, "residence_city")], rows
        versions = rows[0]["versions"]
        assert sorted(v["value"] for v in versions) == ["东莞市", "深圳市"]
        assert {v["writer"] for v in versions} == {"province-44", "province-11"}
    assert "residence_city" in ok("conflicts", "list", "-c", n11)
    one = ok_json("conflicts", "show", "-c", n44, pid)
    assert one["person_id"] == pid and list(one["conflicts"]) == ["residence_city"]
    assert sorted(v["value"] for v in one["conflicts"]["residence_city"]) == ["东莞市", "深圳市"]
    assert "深圳市" in ok("conflicts", "show", "-c", n11, pid)
    shown = ok_json("person", "show", "-c", n11, pid)
    assert shown["residence_city"] in ("东莞市", "深圳市")

    # Settling a field that is not in conflict is refused.
    r = yipanqi("conflicts", "resolve", "-c", n44, pid, "children", "--value", "1")
    assert r.returncode != 0 and "children" in r.stderr

    out = ok("conflicts", "resolve", "-c", n44, pid, "residence_city", "--value", "佛山市")
    assert f"settled residence_city of {pid}" in out
    assert ok_json("conflicts", "list", "-c", n44) == []
    assert ok_json("conflicts", "show", "-c", n44, pid)["conflicts"] == {}

    def settled_everywhere() -> bool:
        return all((r := fed.get(i, pid)) and r["residence_city"] == "佛山市" and not r["_meta"]["conflicts"]
                   for i in ("province-44", "province-11", "hub-national"))

    eventually(settled_everywhere, 45, message=lambda: f"{[fed.get(i, pid) for i in ('province-44', 'province-11', 'hub-national')]}")
    for config in (n44, n11, cfg(fed, "hub-national")):
        assert ok_json("person", "show", "-c", config, pid)["residence_city"] == "佛山市"
    assert ok_json("conflicts", "list", "-c", n11) == []
    assert status(fed, "province-11")["conflicts"] == 0
    assert status(fed, "hub-national")["conflicts"] == 0

    history = ok_json("person", "history", "-c", n11, pid)
    steps = [(h["origin"], h["op"], h["operator"]) for h in history]
    assert steps.count(("province-44", "create", "operator-44-admin")) == 1
    assert ("province-44", "update", "operator-44-admin") in steps
    assert ("province-11", "update", "operator-11-admin") in steps
    assert steps[-1] == ("province-44", "settle", "operator-44-admin")
    assert len(history) == 4
    assert all(h["at_ms"] > 0 for h in history)
    via = {(h["origin"], h["op"]): h["via"] for h in history}
    assert via[("province-11", "update")] == "local"
    assert via[("province-44", "settle")] in ("hub-bohai", "hub-national")
    assert "settle" in ok("person", "history", "-c", n11, pid)


# -- refusals -------------------------------------------------------------------------

def _count(fed: Fed, identity: str) -> int:
    return len(fed.list(identity, include_deleted=True))


def test_show_of_an_unknown_record_fails_naming_it(federation: Fed) -> None:
    missing = "0b7c1d52-3f55-4a5e-9a7e-6f0d8e2b9c11"
    for identity in ("province-44", "hub-national"):
        r = yipanqi("person", "show", "-c", cfg(federation, identity), missing)
        assert r.returncode != 0
        assert missing in r.stderr and "not found" in r.stderr
        assert r.stdout == ""
    r = yipanqi("person", "history", "-c", cfg(federation, "province-44"), missing)
    assert r.returncode != 0 and missing in r.stderr


def _bad_checksum(id_number: str) -> str:
    last = "0" if id_number[-1] != "0" else "1"
    return id_number[:-1] + last


@pytest.mark.parametrize(("case", "field"), [
    ("bad checksum", "id_number"),
    ("unknown province", "household_province"),
    ("future date", "moved_in_on"),
    ("negative children", "children"),
    ("unknown field", "nickname"),
    ("missing field", "sex"),
    ("not involving 44", "residence_province"),
])
def test_person_add_refuses_bad_input_and_writes_nothing(federation: Fed, rng: random.Random,
                                                        case: str, field: str) -> None:
    fed = federation
    good = person(rng, household="45", residence="44")
    bad = dict(good)
    if case == "bad checksum":
        bad["id_number"] = _bad_checksum(str(good["id_number"]))
    elif case == "unknown province":
        bad["household_province"] = "99"
    elif case == "future date":
        bad["moved_in_on"] = (date.today() + timedelta(days=3)).isoformat()
    elif case == "negative children":
        bad["children"] = -1
    elif case == "unknown field":
        bad["nickname"] = "小明"
    elif case == "missing field":
        del bad["sex"]
    elif case == "not involving 44":
        bad.update(household_province="11", residence_province="31", residence_city="上海市")
    before = _count(fed, "province-44")
    last_seq = fed.status("province-44")["last_seq"]

    r = yipanqi("person", "add", "-c", cfg(fed, "province-44"), "--json", json.dumps(bad, ensure_ascii=False))
    assert r.returncode != 0, r.stdout
    assert f"{field}:" in r.stderr, r.stderr
    assert r.stdout == ""
    assert _count(fed, "province-44") == before
    assert fed.status("province-44")["last_seq"] == last_seq
    assert fed.status("province-44")["quarantined"] == 0


def test_person_update_refuses_bad_values(federation: Fed, rng: random.Random) -> None:
    fed = federation
    created = fed.write("province-44", "create", person(rng, household="45", residence="44"))
    pid = created["person_id"]
    config = cfg(fed, "province-44")
    for sets, field in ((["children=-2"], "children"), (["residence_province=99"], "residence_province"),
                        (["nickname=x"], "nickname"), (["children=two"], "children")):
        r = yipanqi("person", "update", "-c", config, pid, *[a for s in sets for a in ("--set", s)])
        assert r.returncode != 0 and f"{field}:" in r.stderr, r.stderr
    assert fed.get("province-44", pid) == created


# -- statistics -------------------------------------------------------------------------

def _expected_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    res: Counter[str] = Counter()
    hh: Counter[str] = Counter()
    inflow: Counter[str] = Counter()
    outflow: Counter[str] = Counter()
    months: Counter[str] = Counter()
    for r in records:
        h, p = r["household_province"], r["residence_province"]
        res[p] += 1
        hh[h] += 1
        if h != p:
            inflow[p] += 1
            outflow[h] += 1
        if r.get("moved_in_on"):
            months[r["moved_in_on"][:7]] += 1
    return {
        "migrants": len(records),
        "cross_province": sum(inflow.values()),
        "provinces": {c: {"residents": res[c], "household": hh[c], "inflow": inflow[c], "outflow": outflow[c]}
                      for c in sorted(set(res) | set(hh))},
        "moves_by_month": dict(sorted(months.items())),
    }


def test_stats_match_the_records(federation: Fed, rng: random.Random) -> None:
    fed = federation
    # Cross-province moves between every pair of running provinces, written at the residence.
    for household in PROVINCES:
        for residence in PROVINCES:
            if household != residence:
                fed.write(f"province-{residence}", "create", person(rng, household=household, residence=residence))
    fed.quiet()  # everything written above has arrived where it goes
    config44 = cfg(fed, "province-44")
    before = ok_json("stats", "-c", config44)
    month = "2019-03"
    pairs = [("45", "44"), ("45", "44"), ("44", "11"), ("44", "44")]
    ids = []
    for household, residence in pairs:
        fields = {**person(rng, household=household, residence=residence), "moved_in_on": f"{month}-15"}
        ids.append(fed.write("province-44", "create", fields)["person_id"])
    fed.write("province-44", "delete", {}, ids[0])  # deleted records are not counted
    fed.quiet()

    doc = ok_json("stats", "-c", config44)
    assert doc["identity"] == "province-44"
    p, q = before["provinces"], doc["provinces"]
    zero = {"residents": 0, "household": 0, "inflow": 0, "outflow": 0}
    assert q["44"]["residents"] - p["44"]["residents"] == 2
    assert q["44"]["inflow"] - p["44"]["inflow"] == 1
    assert q["44"]["household"] - p["44"]["household"] == 2
    assert q["44"]["outflow"] - p["44"]["outflow"] == 1
    assert q["45"]["household"] - p.get("45", zero)["household"] == 1
    assert q["45"]["outflow"] - p.get("45", zero)["outflow"] == 1
    assert q["11"]["residents"] - p.get("11", zero)["residents"] == 1
    assert doc["moves_by_month"][month] - before["moves_by_month"].get(month, 0) == 3
    assert doc["migrants"] - before["migrants"] == 3
    assert doc["cross_province"] - before["cross_province"] == 2
    # And the whole of it matches the records the node holds.
    records = ok_json("person", "list", "-c", config44)
    want = _expected_stats(records)
    assert {k: doc[k] for k in want} == want
    assert set(doc["delivery"]) >= {f"province-{c}" for c in PROVINCES if c != "44"}

    by_month = ok_json("stats", "-c", config44, "--by", "month")
    assert "provinces" not in by_month and by_month["moves_by_month"] == want["moves_by_month"]
    human = ok("stats", "-c", config44)
    assert f"province-44: {want['migrants']} migrants, {want['cross_province']} cross-province" in human
    assert month in human

    # The national database: every cross-province record in the country, no intra-province ones.
    national = ok_json("stats", "-c", cfg(fed, "hub-national"))
    listed = ok_json("person", "list", "-c", cfg(fed, "hub-national"))
    want = _expected_stats(listed)
    assert {k: national[k] for k in want} == want
    assert set(national["provinces"]) == set(PROVINCES)
    assert national["migrants"] == national["cross_province"]
    everywhere: dict[str, dict] = {}
    for node in NODES:
        for r in ok_json("person", "list", "-c", cfg(fed, node)):
            if r["household_province"] != r["residence_province"]:
                everywhere[r["person_id"]] = r
    assert {r["person_id"]: r for r in listed} == everywhere
