"""Bulk CSV through the `yipanqi` command: `person import` reports each bad row
by file and line and loads the rest, which then sync like any write; `person
export` writes the node's records so that importing them elsewhere gives the
same records back.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from tests.support.launcher import Federation
from core.person import FIELDS
from core.samples import CITIES, sample_people
from tests.integration.conftest import PROVINCES, Fed, eventually, person, yipanqi
from tests.integration.conftest import yipanqi_ok as ok



def listed(config: Path) -> list[dict[str, Any]]:
    return json.loads(ok("person", "list", "-c", config, "--json"))


def involving_44(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Sample people over the running provinces, each moved to 44 unless it already involves 44."""
    out = []
    for p in sample_people(rng, n, provinces=PROVINCES, today=date.today()):
        if "44" not in (p["household_province"], p["residence_province"]):
            p = {**p, "residence_province": "44", "residence_city": rng.choice(CITIES["44"])}
        out.append(p)
    return out


def csv_line(values: list[object]) -> list[str]:
    return ["" if v is None else str(v) for v in values]


def bad_checksum(id_number: str) -> str:
    return id_number[:-1] + ("0" if id_number[-1] != "0" else "1")


# -- import -------------------------------------------------------------------------

def test_import_reports_each_bad_row_and_loads_and_syncs_the_rest(federation: Fed, rng: random.Random,
                                                                  tmp_path: Path) -> None:
    fed = federation
    config = fed.fed.configs["province-44"]
    before = {r["person_id"] for r in listed(config)}
    good = involving_44(rng, 14)
    extra = involving_44(rng, 4)
    # Bad rows, by the line they will sit on (the header is line 1).
    bad_id = {**extra[0], "id_number": bad_checksum(str(extra[0]["id_number"]))}
    bad_children = {**extra[1], "children": -1}
    bad_province = {**extra[2], "household_province": "99"}
    row = lambda p: csv_line([p.get(f) for f in FIELDS])  # noqa: E731
    lines: list[tuple[list[str], str | None]] = [(row(p), None) for p in good[:2]]
    lines.append((row(bad_id), "id_number: bad checksum"))                       # line 4
    lines += [(row(p), None) for p in good[2:5]]
    lines.append((row(bad_children), "children: must not be negative, got -1"))  # line 8
    lines += [(row(p), None) for p in good[5:7]]
    lines.append((row(bad_province), "household_province: unknown province code '99'"))  # line 11
    lines += [(row(p), None) for p in good[7:10]]
    lines.append((row(extra[3]) + ["surplus"], "row: 1 more values than columns"))   # line 15
    lines.append((row(extra[3])[:-3], "row: 3 fewer values than columns"))             # line 16
    lines += [(row(p), None) for p in good[10:]]
    path = tmp_path / "people.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for values, _ in lines:
            writer.writerow(values)
    expected = sorted((n, why) for n, (_, why) in enumerate(lines, start=2) if why)
    assert [n for n, _ in expected] == [4, 8, 11, 15, 16]

    r = yipanqi("person", "import", "-c", config, path)
    assert r.returncode == 2, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"{len(good)} new, 0 unchanged, 0 differing, {len(expected)} refused"
    reported = [line for line in r.stderr.splitlines() if line.startswith(f"{path}:")]
    assert len(reported) == len(expected), r.stderr
    for line, (n, why) in zip(reported, expected):
        assert line.startswith(f"{path}:{n}: {why}"), (line, n, why)

    now = {r["person_id"]: r for r in listed(config) if r["person_id"] not in before}
    assert len(now) == len(good)
    by_id_number = {r["id_number"]: r for r in now.values()}
    for p in good:
        assert {k: v for k, v in by_id_number[p["id_number"]].items() if k != "person_id"} == p
    # Nothing of the refused rows was written.
    assert not {bad_id["id_number"], extra[1]["id_number"], extra[2]["id_number"],
                extra[3]["id_number"]} & set(by_id_number)

    # Each imported record reaches the other province it involves, and only that one.
    elsewhere: dict[str, set[str]] = {c: set() for c in PROVINCES if c != "44"}
    for pid, rec in now.items():
        for code in {rec["household_province"], rec["residence_province"]} - {"44"}:
            elsewhere[code].add(pid)
    assert any(elsewhere.values())

    def synced() -> bool:
        for code, pids in elsewhere.items():
            have = fed.list(f"province-{code}")
            for pid in set(now):
                if (pid in pids) != (pid in have):
                    return False
                if pid in pids and {k: v for k, v in have[pid].items() if k != "_meta"} != now[pid]:
                    return False
        return True

    eventually(synced, 45, interval=0.5, message="the imported records did not reach the provinces they involve")
    history = fed.history("province-44", next(iter(now)))
    assert [(h["op"], h["operator"]) for h in history] == [("create", "operator-44-admin")]


def test_import_with_an_unknown_column_writes_nothing(federation: Fed, rng: random.Random, tmp_path: Path) -> None:
    fed = federation
    config = fed.fed.configs["province-44"]
    count, last_seq = len(listed(config)), fed.status("province-44")["last_seq"]
    path = tmp_path / "odd.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FIELDS, "nickname"])
        for p in involving_44(rng, 3):
            writer.writerow(csv_line([p.get(f) for f in FIELDS]) + ["小明"])
    r = yipanqi("person", "import", "-c", config, path)
    assert r.returncode == 1
    assert "nickname" in r.stderr and "unknown field" in r.stderr, r.stderr
    assert str(path) in r.stderr
    assert len(listed(config)) == count
    assert fed.status("province-44")["last_seq"] == last_seq


def test_import_of_only_bad_rows_exits_1(federation: Fed, rng: random.Random, tmp_path: Path) -> None:
    config = federation.fed.configs["province-44"]
    count = len(listed(config))
    p, q = involving_44(rng, 2)
    path = tmp_path / "bad.csv"
    path.write_text(",".join(FIELDS) + "\n" + ",".join(csv_line([{**p, "sex": "X"}.get(f) for f in FIELDS]))
                    + "\n" + ",".join(csv_line([{**q, "children": "many"}.get(f) for f in FIELDS])) + "\n",
                    encoding="utf-8")
    r = yipanqi("person", "import", "-c", config, path)
    assert r.returncode == 1
    assert "0 new, 0 unchanged, 0 differing, 2 refused" in r.stdout
    assert f"{path}:2: sex:" in r.stderr and f"{path}:3: children:" in r.stderr, r.stderr
    assert len(listed(config)) == count


# -- export -------------------------------------------------------------------------

def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["person_id", *FIELDS]
        return list(reader)


def test_export_round_trips_through_a_fresh_node(federation: Fed, rng: random.Random, tmp_path: Path) -> None:
    fed = federation
    config = fed.fed.configs["province-44"]
    # Some history worth exporting: updates, a cleared optional field, a deletion, records from elsewhere.
    a = fed.write("province-44", "create", person(rng, household="45", residence="44"))
    fed.write("province-44", "update", {"children": 4, "residence_city": "东莞市"}, a["person_id"])
    b = fed.write("province-44", "create", {**person(rng, household="44", residence="44"),
                                            "contraception": "避孕套"})
    fed.write("province-44", "update", {"contraception": None}, b["person_id"])
    gone = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    fed.write("province-44", "delete", {}, gone["person_id"])
    theirs = fed.write("province-31", "create", person(rng, household="44", residence="31"))
    fed.arrives("province-44", theirs["person_id"], theirs)

    records = {r["person_id"]: r for r in listed(config)}
    out = tmp_path / "export.csv"
    assert ok("person", "export", "-c", config, out).strip() == f"exported {len(records)} records to {out}"
    rows = _csv_rows(out)
    assert len(rows) == len(records) > 3
    assert gone["person_id"] not in {r["person_id"] for r in rows}
    for row in rows:
        record = records[row["person_id"]]
        assert row == {k: "" if record.get(k) is None else str(record[k]) for k in ["person_id", *FIELDS]}
    assert next(r for r in rows if r["person_id"] == b["person_id"])["contraception"] == ""

    # Import it at province 44 of a brand-new federation (only that node runs): the same records.
    fresh = Federation.create(tmp_path / "fresh", ["44"])
    # A node rebuilt in the same federation holds the same federation secret (person keys are its HMAC).
    shutil.copyfile(fed.root / "nodes" / "44" / "federation.secret", tmp_path / "fresh" / "nodes" / "44" / "federation.secret")
    try:
        fresh.start("province-44")
        fresh_config = fresh.configs["province-44"]
        r = yipanqi("person", "import", "-c", fresh_config, out)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1] == f"{len(records)} new, 0 unchanged, 0 differing, 0 refused"
        # Equal records; a cleared optional field reads as null where it was cleared and is simply
        # absent where it was never set (CSV has one spelling for both: an empty cell).
        assert {r["person_id"]: r for r in listed(fresh_config)} == {
            pid: {k: v for k, v in rec.items() if v is not None} for pid, rec in records.items()}
        again = tmp_path / "again.csv"
        ok("person", "export", "-c", fresh_config, again)
        assert again.read_bytes() == out.read_bytes()
        # Importing the same file again changes nothing: every row is a person held, unchanged.
        r = yipanqi("person", "import", "-c", fresh_config, out)
        assert r.returncode == 0 and f"0 new, {len(records)} unchanged, 0 differing, 0 refused" in r.stdout
        assert len(listed(fresh_config)) == len(records)
    finally:
        fresh.stop_all()


# -- duplicates across provinces -----------------------------------------------------

def test_one_person_registered_at_two_provinces_is_one_record_and_no_duplicate_anywhere(
        federation: Fed, rng: random.Random) -> None:
    """Was: two provinces that never hold each other's record each registered the same person, and
    the national hub and the household province held one ID number under two ids. With person
    keys (core.personkey) both registrations get the same key, so every replica holds one record
    (31's, a province the record did not involve, waits as a claim) and `duplicates` lists nothing."""
    fed = federation
    p = person(rng, household="11", residence="44")
    at44 = fed.write("province-44", "create", p)["person_id"]
    at31 = fed.write("province-31", "create", {**p, "residence_province": "31", "residence_city": "上海市"})["person_id"]
    assert at44 == at31 and at44.startswith("p-")
    for where in ("hub-national", "province-11"):
        config = fed.fed.configs[where]
        eventually(lambda: any(r["id_number"] == p["id_number"] for r in fed.list(where).values()), 45,
                   interval=0.5, message=f"{where} never received the person")
        live = [r for r in fed.list(where).values() if r["id_number"] == p["id_number"]]
        assert [r["person_id"] for r in live] == [at44], where
        doc = json.loads(ok("duplicates", "-c", config, "--json"))
        assert not [d for d in doc if at44 in d["person_ids"]], (where, doc)
    # A regional hub holds no records: it says so.
    r = yipanqi("duplicates", "-c", fed.fed.configs["hub-pearl"])
    assert r.returncode != 0 and "holds no records" in r.stderr, r.stderr
