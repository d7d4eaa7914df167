"""What a new operator meets first, through the real CLI: `person list` pages (`--limit`,
`--after`) and prints whole ids; a unique id prefix works wherever a PERSON_ID is taken;
`person show --json` says `deleted`; `person history` at the province a person moved to says
what it cannot show and why; times are labelled UTC; counts read "1 record", not "1 records".

One small federation (provinces 44 and 45, both in the Pan-Pearl region).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Fed, person, small_federation, yipanqi, yipanqi_ok
from yipanqi.v2 import admin_pb2 as apb

N44, N45 = "province-44", "province-45"
# A person id: a p- key (core.personkey), or a legacy uuid
UUID = re.compile(r"p-[a-z2-7]{26}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    with small_federation(tmp_path_factory.mktemp("fed"), ["44", "45"]) as f:
        yield f


def cfg(fed: Fed, identity: str) -> Path:
    return fed.fed.configs[identity]


def test_person_list_pages_with_limit_and_after_and_shows_whole_ids(fed: Fed, tmp_path: Path) -> None:
    rng = random.Random(1)
    for _ in range(5):
        fed.write(N44, "create", person(rng, household="44", residence="44"))
    everything = sorted(fed.list(N44))
    seen: list[str] = []
    after = ""
    while True:
        out = yipanqi_ok("person", "list", "-c", cfg(fed, N44), "--limit", 2, *(["--after", after] if after else []))
        page = [m.group(0) for line in out.splitlines() if (m := UUID.match(line))]  # one row per record
        assert 1 <= len(page) <= 2 or (not page and seen), out
        seen.extend(page)
        hint = re.search(r"the next page: --after (\S+)$", out.strip())
        if not hint:
            assert out.strip().endswith(("0 records", "1 record", "2 records")), out
            break
        assert out.strip().endswith(f"2 records; the next page: --after {page[-1]}"), out
        after = hint.group(1)
    assert seen == everything  # whole ids, in order, each once
    one = yipanqi_ok("person", "list", "-c", cfg(fed, N44), "--limit", 1)
    assert "1 record;" in one and "1 records" not in one, one
    rows = json.loads(yipanqi_ok("person", "list", "-c", cfg(fed, N44), "--json", "--limit", 3,
                                 "--after", everything[0]))
    assert [r["person_id"] for r in rows] == everything[1:4]
    bad = yipanqi("person", "list", "-c", cfg(fed, N44), "--after", "not an id")
    assert bad.returncode != 0 and "--after" in bad.stderr, bad.stderr


def test_the_first_page_of_a_list_is_small_so_it_prints_at_once(fed: Fed) -> None:
    rng = random.Random(2)
    stub = fed.admin(N45)
    rows = [apb.WriteRequest(kind="person", op="create", line=i + 1,
                             fields_json=json.dumps(person(rng, household="45", residence="45"), ensure_ascii=False))
            for i in range(130)]
    results = [r for rep in stub.Import(iter([apb.ImportChunk(rows=rows)]), timeout=60) for r in rep.results]
    assert all(not r.error for r in results), [r.error for r in results if r.error][:3]
    pages = [len(p.records) for p in stub.List(apb.ListRequest(kind="person"), timeout=60)]
    assert pages[0] <= 50 < sum(pages), pages
    limited = [len(p.records) for p in stub.List(apb.ListRequest(kind="person", limit=7), timeout=60)]
    assert sum(limited) == 7, limited


def test_a_unique_prefix_is_accepted_and_an_ambiguous_one_refused(fed: Fed) -> None:
    from core.personkey import person_key

    rng = random.Random(3)
    # Two people whose keys share their first 4 characters (p-xy): found with the node's secret.
    secret = (cfg(fed, N44).parent / "federation.secret").read_bytes()
    by_prefix: dict[str, dict] = {}
    while True:
        p = person(rng, household="44", residence="44")
        key = person_key(secret, str(p["id_number"]))
        if key[:4] in by_prefix and key not in fed.list(N44):
            break
        by_prefix[key[:4]] = p
    a = fed.write(N44, "create", by_prefix[key[:4]])["person_id"]
    b = fed.write(N44, "create", p)["person_id"]
    assert b == key and a[:4] == b[:4] and a != b
    unique_a = next(a[:n] for n in range(8, 28) if a[:n] != b[:n])
    unique_b = next(b[:n] for n in range(8, 28) if a[:n] != b[:n])
    shown = json.loads(yipanqi_ok("person", "show", "-c", cfg(fed, N44), unique_a, "--json"))
    assert shown["person_id"] == a and shown["deleted"] is False
    assert yipanqi_ok("person", "update", "-c", cfg(fed, N44), unique_b, "--set", "children=4").strip() == b
    assert fed.get(N44, b)["children"] == 4
    ambiguous = yipanqi("person", "show", "-c", cfg(fed, N44), a[:4])
    assert ambiguous.returncode != 0 and "more than one" in ambiguous.stderr and "PERSON_ID" in ambiguous.stderr
    none = yipanqi("person", "history", "-c", cfg(fed, N44), "ffff0000")
    assert none.returncode != 0 and "no person record" in none.stderr, none.stderr


def test_show_json_of_a_tombstone_says_deleted(fed: Fed) -> None:
    rec = fed.write(N44, "create", person(random.Random(4), household="44", residence="44"))
    yipanqi_ok("person", "delete", "-c", cfg(fed, N44), rec["person_id"][:13])
    shown = json.loads(yipanqi_ok("person", "show", "-c", cfg(fed, N44), rec["person_id"], "--json"))
    assert shown["deleted"] is True and shown["name"] == rec["name"]
    listed = json.loads(yipanqi_ok("person", "list", "-c", cfg(fed, N44), "--json", "--include-deleted"))
    assert [r["deleted"] for r in listed if r["person_id"] == rec["person_id"]] == [True]
    assert rec["person_id"] not in {r["person_id"] for r in json.loads(
        yipanqi_ok("person", "list", "-c", cfg(fed, N44), "--json"))}


def test_history_where_a_person_moved_to_holds_the_relayed_history(fed: Fed) -> None:
    rec = fed.write(N44, "create", person(random.Random(5), household="44", residence="44"))
    pid = rec["person_id"]
    fed.write(N44, "update", {"children": 1}, pid)
    fed.write(N44, "update", {"children": 2}, pid)
    moved = fed.write(N44, "update", {"residence_province": "45", "residence_city": "南宁市"}, pid)
    fed.arrives(N45, pid, moved, timeout=60)

    # The move carried the record's history to 45 (core.relay), each delta under 44's signature:
    # 45 shows all of it, with nothing left to explain.
    at45 = yipanqi_ok("person", "history", "-c", cfg(fed, N45), pid)
    assert "written (UTC)" in at45 and "Not shown" not in at45, at45
    js = yipanqi("person", "history", "-c", cfg(fed, N45), pid, "--json")
    assert js.returncode == 0 and [r["origin"] for r in json.loads(js.stdout)] == [N44] * 4, js.stdout
    assert "Not shown" not in js.stderr
    at44 = yipanqi_ok("person", "history", "-c", cfg(fed, N44), pid)  # the whole history: no note
    assert "Not shown" not in at44 and at44.count("province-44") >= 4, at44
