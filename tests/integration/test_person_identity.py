"""One person, one record at a node, through the real `yipanqi` command and a real node process.

`person add` of a person the node holds never makes a second record (also over the Admin RPC a
script would call); 15-digit first-generation IDs are held under their 18-digit form; `person
import` counts new, unchanged, differing and refused rows, reports differing rows by line
without values, and is idempotent: re-run whole, resumed with --from-line after a real SIGINT,
or fed the node's own export; `yipanqi duplicates` lists the legacy duplicates of a store.
"""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from certs.signing import Signer
from runtime.config import load_node
from tests.support.launcher import Federation
from core.idnumber import make_id_number
from core.person import FIELDS
from core.samples import sample_person
from store.store import Store
from tests.integration.conftest import ROOT, Fed, eventually, running, yipanqi
from tests.integration.conftest import yipanqi_ok as ok

N44 = "province-44"


def _legacy(fed: Federation) -> dict[str, Any]:
    """Duplicates as a store upgraded from an older release holds them, written before the node starts."""
    cfg = load_node(fed.configs[N44])
    signer = Signer.load(cfg.signing.key, cfg.signing.cert)
    store = Store.open(cfg.database, owner=N44)
    base = {"name": "王五", "sex": "F", "birth_date": "1988-02-03", "household_province": "44",
            "residence_province": "44"}
    one = make_id_number("440106", date(1988, 2, 3), 22)
    two = make_id_number("450103", date(1988, 2, 3), 24)
    ids = sorted(str(uuid.uuid4()) for _ in range(3))
    people = {ids[0]: {**base, "id_number": one}, ids[1]: {**base, "id_number": one},
              ids[2]: {**base, "id_number": two}}
    store.write_local_batch([("person", rid, (lambda v: lambda cur: ("create", v))(v)) for rid, v in people.items()],
                            operator=None, now_ms=int(time.time() * 1000), seal=signer.seal_batch)
    store.close()
    return {"ids": ids, "people": people}


@pytest.fixture(scope="module")
def node44(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fed, dict[str, Any]]]:
    fed = Fed(Federation.create(tmp_path_factory.mktemp("identity"), ["44"]))
    legacy = _legacy(fed.fed)
    with running(fed, lambda: fed.fed.start(N44)):
        yield fed, legacy


def _config(node44: tuple[Fed, dict[str, Any]]) -> Path:
    return node44[0].fed.configs[N44]


def _count(fed: Fed) -> int:
    return int(fed.status(N44)["records"])


def _people(rng: random.Random, n: int) -> list[dict[str, object]]:
    out = []
    for _ in range(n):
        other = rng.choice(["11", "31", "45", "65"])
        out.append(sample_person(rng, household=other, residence="44", today=date.today()))
    return out


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for p in rows:
            writer.writerow(["" if p.get(f) is None else str(p[f]) for f in FIELDS])
    return path


# -- person add ---------------------------------------------------------------------------

def test_add_of_a_held_person_prints_it_or_refuses_naming_the_differences(node44: tuple[Fed, dict]) -> None:
    fed, config = node44[0], _config(node44)
    rng = random.Random(11)
    (p,) = _people(rng, 1)
    before = _count(fed)
    first = ok("person", "add", "-c", config, "--json", json.dumps(p, ensure_ascii=False)).strip()
    again = yipanqi("person", "add", "-c", config, "--json", json.dumps(p, ensure_ascii=False))
    assert again.returncode == 0 and again.stdout.strip() == first, again.stderr

    changed = {**p, "name": "张叁", "children": 9}
    r = yipanqi("person", "add", "-c", config, "--json", json.dumps(changed, ensure_ascii=False))
    assert r.returncode != 0
    assert first in r.stderr and "name, children" in r.stderr and "person update" in r.stderr, r.stderr
    assert "张叁" not in r.stderr
    # A script calling the Admin service directly is held to the same rule.
    with pytest.raises(grpc.RpcError) as err:
        fed.write(N44, "create", changed)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and first in (err.value.details() or "")
    with pytest.raises(grpc.RpcError):
        fed.write(N44, "create", changed, record_id=str(uuid.uuid4()))
    assert fed.write(N44, "create", p)["person_id"] == first
    assert _count(fed) == before + 1
    assert fed.get(N44, first)["name"] == p["name"]  # type: ignore[index]


def test_a_15_digit_id_is_held_as_18_digits_by_add_update_and_import(node44: tuple[Fed, dict], tmp_path: Path) -> None:
    fed, config = node44[0], _config(node44)
    eighteen = make_id_number("440104", date(1962, 7, 1), 31)
    fifteen = eighteen[:6] + eighteen[8:17]
    p = {"id_number": fifteen, "name": "老张", "sex": "M", "birth_date": "1962-07-01",
         "household_province": "44", "residence_province": "44"}
    pid = ok("person", "add", "-c", config, "--json", json.dumps(p, ensure_ascii=False)).strip()
    assert fed.get(N44, pid)["id_number"] == eighteen  # type: ignore[index]
    assert ok("person", "add", "-c", config, "--json",
              json.dumps({**p, "id_number": eighteen}, ensure_ascii=False)).strip() == pid
    r = yipanqi("person", "import", "-c", config, _write_csv(tmp_path / "old.csv", [p]))
    assert r.returncode == 0 and r.stdout.strip() == "0 new, 1 unchanged, 0 differing, 0 refused", r.stdout
    # update: a record holding another number is given the 15-digit one, and stores 18 digits.
    other = make_id_number("440104", date(1962, 7, 1), 33)
    q = {**p, "id_number": other, "name": "老李"}
    qid = ok("person", "add", "-c", config, "--json", json.dumps(q, ensure_ascii=False)).strip()
    new15 = make_id_number("440104", date(1962, 7, 1), 35)
    ok("person", "update", "-c", config, qid, "--set", f"id_number={new15[:6] + new15[8:17]}")
    assert fed.get(N44, qid)["id_number"] == new15  # type: ignore[index]


# -- person import ------------------------------------------------------------------------

def test_import_counts_and_reports_held_people_and_applies_them_only_with_update(
        node44: tuple[Fed, dict], tmp_path: Path) -> None:
    fed, config = node44[0], _config(node44)
    rng = random.Random(12)
    held, a, b = _people(rng, 3)
    held_id = ok("person", "add", "-c", config, "--json", json.dumps(held, ensure_ascii=False)).strip()
    before = _count(fed)
    rows = [a, held, {**held, "name": "改名"}, b, a, {**b, "residence_city": "外地", "children": 5},
            {**a, "sex": "X"}]
    path = _write_csv(tmp_path / "mixed.csv", rows)
    r = yipanqi("person", "import", "-c", config, path)
    assert r.returncode == 2, r.stderr
    assert r.stdout.strip() == "2 new, 2 unchanged, 2 differing, 1 refused"
    lines = [x for x in r.stderr.splitlines() if x.startswith(f"{path}:")]
    assert len(lines) == 3, r.stderr
    assert lines[0] == f"{path}:4: person {held_id} is held here with other values in: name; not written (--update writes them)"
    b_id = next(pid for pid, rec in fed.list(N44).items() if rec["id_number"] == b["id_number"])
    assert lines[1].startswith(f"{path}:7: person {b_id} is held here with other values in: residence_city, children;")
    assert lines[2].startswith(f"{path}:8: sex:")
    assert "改名" not in r.stderr and "外地" not in r.stderr  # field names, never values
    assert _count(fed) == before + 2
    assert fed.get(N44, held_id)["name"] == held["name"]  # type: ignore[index]

    r = yipanqi("person", "import", "-c", config, path, "--update", "--json")
    assert r.returncode == 2, r.stderr  # the bad row is still refused
    summary = json.loads(r.stdout)
    assert summary == {"new": 0, "unchanged": 4, "differing": 2, "updated": 2, "refused": 1, "committed": 2,
                       "interrupted": False, "resume_from_line": None}
    # Line 3 equals the record; line 4 then renames it; line 7 writes b's differing fields.
    assert fed.get(N44, held_id)["name"] == "改名"  # type: ignore[index]
    assert (fed.get(N44, b_id)["residence_city"], fed.get(N44, b_id)["children"]) == ("外地", 5)  # type: ignore[index]
    assert _count(fed) == before + 2


def _import_proc(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "person", "import", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def test_an_import_stopped_by_sigint_says_what_was_committed_and_resumes_without_duplicates(
        node44: tuple[Fed, dict], tmp_path: Path) -> None:
    fed, config = node44[0], _config(node44)
    rng = random.Random(13)
    n = 12000
    path = _write_csv(tmp_path / "big.csv", _people(rng, n))
    before = _count(fed)
    proc = _import_proc("-c", config, path)
    try:
        eventually(lambda: _count(fed) >= before + 1000 or proc.poll() is not None, 120, interval=0.05,
                   message="the import committed nothing")
        assert proc.poll() is None, "the import finished before it could be interrupted: make the file bigger"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    summary, note = out.strip().splitlines()[-2:]
    committed = _count(fed) - before
    assert 0 < committed < n
    assert summary == f"{committed} new, 0 unchanged, 0 differing, 0 refused"
    assert note == f"interrupted: {committed} rows committed; to resume: the same command with --from-line {committed + 2}"

    # Resumed from that line: the rest, nobody twice.
    r = yipanqi("person", "import", "-c", config, path, "--from-line", committed + 2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{n - committed} new, 0 unchanged, 0 differing, 0 refused"
    assert _count(fed) == before + n
    # The whole file again (what an operator does who lost the line): nothing new.
    r = yipanqi("person", "import", "-c", config, path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unchanged"] == n and json.loads(r.stdout)["new"] == 0
    assert _count(fed) == before + n
    ids = [rec["id_number"] for rec in fed.list(N44).values()]
    assert len(ids) == len(set(ids)) + 1  # one number twice: the legacy duplicate written before start


def test_an_export_imports_back_into_the_same_node_as_all_unchanged(node44: tuple[Fed, dict], tmp_path: Path) -> None:
    fed, config = node44[0], _config(node44)
    rng = random.Random(14)
    for p in _people(rng, 5):
        ok("person", "add", "-c", config, "--json", json.dumps(p, ensure_ascii=False))
    out = tmp_path / "export.csv"
    ok("person", "export", "-c", config, out)
    before = _count(fed)
    r = yipanqi("person", "import", "-c", config, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"0 new, {before} unchanged, 0 differing, 0 refused"
    assert _count(fed) == before


# -- duplicates ---------------------------------------------------------------------------

def test_duplicates_lists_each_pair_of_likely_duplicates_and_why(node44: tuple[Fed, dict]) -> None:
    config = _config(node44)
    a, b, c = node44[1]["ids"]
    doc = json.loads(ok("duplicates", "-c", config, "--json"))
    assert doc == [{"person_ids": [a, b], "why": "same_id_number"},
                   {"person_ids": [a, c], "why": "same_name_birth_date_sex"}]
    text = ok("duplicates", "-c", config)
    assert f"{a}  {b}  same ID number under two ids" in text
    assert f"{a}  {c}  same name, birth date and sex; different ID numbers" in text
    assert text.strip().endswith("2 likely duplicates")
    assert "王五" not in text and node44[1]["people"][a]["id_number"] not in text
