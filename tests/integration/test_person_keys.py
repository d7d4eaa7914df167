"""One person, one record (issue 12): the same person registered at 44 and at 65 while 44 is
cut off gets the same key at both, and after healing is ONE record at both nodes and the
national hub, with the one differing field (the name) as an open conflict listed by
`conflicts list` at both and settled by `conflicts resolve`."""

from __future__ import annotations

import json
import time
import random
import signal
from pathlib import Path

from tests.integration.conftest import eventually, person, small_federation, yipanqi, yipanqi_ok

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


def test_a_registration_by_an_uninvolved_province_is_a_claim_until_the_household_province_accepts(
        tmp_path: Path) -> None:
    rng = random.Random("claims")
    with small_federation(tmp_path / "fed", ["44", "45", "65"]) as fed:
        base = person(rng, household="44", residence="65")
        pid = fed.write("province-44", "create", base)["person_id"]
        fed.arrives(NATIONAL, pid, fed.get("province-44", pid))
        # 45 registers the same person as living in 45: a province the record does not involve.
        claimed = fed.write("province-45", "create", {**base, "residence_province": "45"})
        assert claimed["person_id"] == pid
        c44 = fed.fed.configs["province-44"]

        def listed(config: Path) -> list:
            return json.loads(yipanqi_ok("claims", "list", "-c", config, "--json"))

        (claim,) = eventually(lambda: listed(c44), 60, message="no claim listed at 44")
        assert (claim["person_id"], claim["claimer"], claim["op"], claim["status"]) == (pid, "province-45", "create",
                                                                                      "open")
        eventually(lambda: listed(fed.fed.configs[NATIONAL]), 60, message="no claim listed at the national hub")
        # Held apart: the record is unchanged at 44 and the national hub, and nothing reached 45.
        for identity in ("province-44", NATIONAL):
            assert fed.get(identity, pid)["residence_province"] == "65"
            assert fed.get(identity, pid)["_meta"]["conflicts"] == {}
        assert fed.get("province-45", pid)["_meta"]["clock"] == {"province-45": 1}
        # A node that holds no such claim (65: the claim never reached it) cannot accept it.
        r = yipanqi("claims", "accept", "-c", fed.fed.configs["province-65"], str(claim["claim_id"]))
        assert r.returncode != 0
        decided = json.loads(yipanqi_ok("claims", "accept", "-c", c44, str(claim["claim_id"]), "--json"))
        assert decided["status"] == "accepted" and decided["decided_by"] == "operator-44-admin"
        assert listed(c44) == []

        def everywhere() -> dict | None:
            copies = [fed.get(i, pid) for i in ("province-44", "province-45", "province-65", NATIONAL)]
            return copies[0] if all(c == copies[0] for c in copies) else None

        merged = eventually(everywhere, 90, interval=0.5, message="the accepted claim did not converge")
        assert set(merged["_meta"]["conflicts"]) == {"residence_province"}
        assert {v["value"] for v in merged["_meta"]["conflicts"]["residence_province"]} == {"65", "45"}
        assert eventually(lambda: listed(fed.fed.configs[NATIONAL]) == [], 30)


def _legacy_person(fed, code: str, values: dict) -> str:  # type: ignore[no-untyped-def]
    """A record written before person keys: a uuid id, signed by the node, in its store (node stopped)."""
    import uuid

    from certs.signing import Signer
    from runtime.config import load_node
    from store.store import Store

    cfg = load_node(fed.configs[f"province-{code}"])
    store = Store.open(cfg.database, owner=cfg.identity)
    try:
        rid = str(uuid.uuid4())
        signer = Signer.load(cfg.signing.key, cfg.signing.cert)
        store.write_local("person", rid, lambda current: ("create", dict(values)), operator=None,
                          now_ms=int(time.time() * 1000), seal=signer.seal_batch)
    finally:
        store.close()
    return rid


def test_person_link_merges_a_legacy_record_into_the_id_keyed_one_everywhere(tmp_path: Path) -> None:
    rng = random.Random("link")
    base = {**person(rng, household="44", residence="65"), "name": "张三"}
    with small_federation(tmp_path / "fed", ["44", "65"]) as fed:
        # 65 registers the person (keyed); then 44 loads a legacy copy from before person keys
        # straight into its store (node stopped: an old database's import, which no add rule sees).
        pid = fed.write("province-65", "create", {**base, "name": "张叁"})["person_id"]
        assert pid.startswith("p-")
        fed.arrives("province-44", pid, fed.get("province-65", pid), timeout=60)
        fed.fed.kill("province-44", signal.SIGTERM)
        old = _legacy_person(fed.fed, "44", base)
        fed.fed.start("province-44")
        assert pid != old
        fed.arrives("province-65", old, fed.get("province-44", old), timeout=60)
        c44 = fed.fed.configs["province-44"]
        bad = yipanqi("person", "link", "-c", c44, old, base["id_number"][:-1] + "Y")
        assert bad.returncode != 0 and "ID_NUMBER_OR_KEY" in bad.stderr + bad.stdout
        assert yipanqi_ok("person", "link", "-c", c44, old, base["id_number"]).strip() == pid

        def linked() -> dict | None:
            copies = [fed.get(i, pid) for i in EVERYWHERE]
            # The old key reads as the record it is part of now (the alias, core.graph), everywhere.
            via_old = [fed.get(i, old) for i in EVERYWHERE]
            ok = (all(c == copies[0] for c in copies) and "name" in copies[0]["_meta"]["conflicts"]
                  and all(g == copies[0] for g in via_old))
            return copies[0] if ok else None

        merged = eventually(linked, 90, interval=0.5,
                            message=lambda: f"not linked: {[fed.get(i, pid) for i in EVERYWHERE]}")
        assert set(merged["_meta"]["conflicts"]) == {"name"}  # every version kept: both spellings
        assert {v["value"] for v in merged["_meta"]["conflicts"]["name"]} == {"张三", "张叁"}
        for identity in EVERYWHERE:
            live = [r for r in fed.list(identity).values() if r["id_number"] == base["id_number"]]
            assert [r["person_id"] for r in live] == [pid], identity
        for identity in EVERYWHERE:  # the refused link and the writes were logged without the ID number
            log_text = fed.fed.log_path(identity).read_text(errors="replace")
            assert base["id_number"] not in log_text and base["id_number"][:-1] not in log_text, identity
        assert "ID_NUMBER_OR_KEY" in fed.fed.log_path("province-44").read_text(errors="replace")
