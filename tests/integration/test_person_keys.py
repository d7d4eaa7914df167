"""One person, one record (issue 12): the same person registered at 44 and at 65 while 44 is
cut off gets the same key at both, and after healing is ONE record at both nodes and the
national hub, with the one differing field (the name) as an open conflict listed by
`conflicts list` at both and settled by `conflicts resolve`."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.integration.conftest import eventually, person, small_federation, yipanqi_ok

NATIONAL = "hub-national"
EVERYWHERE = ("province-44", "province-65", NATIONAL)


def test_same_person_registered_at_44_and_65_while_cut_off_is_one_record_with_one_conflict(tmp_path: Path) -> None:
    rng = random.Random("person-keys")
    with small_federation(tmp_path / "fed", ["44", "65"]) as fed:
        base = {**person(rng, household="44", residence="65"), "name": "张三"}
        for hub in ("hub-pearl", NATIONAL):  # 44's home hub and its fallback: 44 is cut off from everyone
            fed.stop(hub)
        at_65 = fed.write("province-65", "create", base)
        at_44 = fed.write("province-44", "create", {**base, "name": "张叁"})
        pid = at_65["person_id"]
        assert pid.startswith("p-") and at_44["person_id"] == pid  # the same key, computed apart
        assert base["id_number"] not in pid
        for hub in (NATIONAL, "hub-pearl"):
            fed.start(hub)

        def converged() -> dict | None:
            copies = [fed.get(i, pid) for i in EVERYWHERE]
            ok = copies[0] is not None and all(c == copies[0] for c in copies) and copies[0]["_meta"]["conflicts"]
            return copies[0] if ok else None

        merged = eventually(converged, 90, interval=0.5,
                            message=lambda: f"not converged: {[fed.get(i, pid) for i in EVERYWHERE]}")
        assert set(merged["_meta"]["conflicts"]) == {"name"}  # every agreeing field merged silently
        assert sorted(v["value"] for v in merged["_meta"]["conflicts"]["name"]) == ["张三", "张叁"]
        for field in base:
            if field != "name":
                assert merged[field] == base[field]
        for identity in EVERYWHERE:  # held once, under the key
            same = [r for r in fed.list(identity).values() if r["id_number"] == base["id_number"]]
            assert [r["person_id"] for r in same] == [pid], identity
        for code in ("44", "65"):
            listed = json.loads(yipanqi_ok("conflicts", "list", "-c", fed.fed.configs[f"province-{code}"], "--json"))
            assert [(r["person_id"], r["field"]) for r in listed] == [(pid, "name")]

        yipanqi_ok("conflicts", "resolve", "-c", fed.fed.configs["province-44"], pid, "name", "--value", "张三")
        settled = fed.get("province-44", pid)
        assert settled["_meta"]["conflicts"] == {} and settled["name"] == "张三"
        for identity in EVERYWHERE:
            fed.arrives(identity, pid, settled, timeout=60)
        for code in ("44", "65"):
            assert json.loads(yipanqi_ok("conflicts", "list", "-c", fed.fed.configs[f"province-{code}"], "--json")) == []
