"""A regional hub cannot write another province's national status row (issue 17, forged reports).

Hub-pearl runs the project's own hub code with its report relay swapped for one that forges
(tests/support/rogue_hub.py, started through tests.support.launcher.Federation.entries): each report it
sends up carries forged rows about province 11 (another region) and province 46 (no node),
an altered copy and a replay of 45's signed report, beside 44's and 45's honest ones.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.support.launcher import TEST_TIMING, Federation
from core.provinces import DEFAULT_REGIONS
from tests.integration.conftest import Fed, eventually, person, small_federation, yipanqi
from tests.support.rogue_hub import FORGED_DELAY_S, FORGED_RECORDS

NATIONAL = "hub-national"
REGION_OF = {p: r for r, ps in DEFAULT_REGIONS.items() for p in ps}
ONLINE_S = TEST_TIMING["online_s"]  # the launcher's [timing].online_s, which the national hub runs with


def _rogue_pearl(fed: Federation) -> None:
    fed.entries["hub-pearl"] = ["tests.support.rogue_hub", "forge-reports"]


def _rows(fed: Fed) -> dict[str, dict]:
    return {r["province"]: r for r in fed.status(NATIONAL)["federation"]}


def test_forged_reports_are_refused_counted_and_a_stopped_node_shows_down(tmp_path: Path) -> None:
    rng = random.Random("signed-reports")
    with small_federation(tmp_path / "fed", ["11", "44", "45"], configure=_rogue_pearl) as fed:
        for author, other in (("province-44", "45"), ("province-11", "45"), ("province-45", "44")):
            fed.write(author, "create", person(rng, household=author[-2:], residence=other))
        fed.quiet()

        def honest_and_refused() -> dict | None:
            doc = fed.status(NATIONAL)
            rows = {r["province"]: r for r in doc["federation"]}
            for code in ("11", "44", "45"):
                own = fed.status(f"province-{code}")
                r = rows[code]
                if not r["connected"] or r["records"] != own["records"] or r["conflicts"] != own["conflicts"]:
                    return None
                if code == "44" and r["delivery_p95_s"] is None:
                    return None  # 45 has not yet reported 44's changes arriving
            return doc if doc["reports"]["refused"].get("hub-pearl", 0) >= 8 else None

        doc = eventually(honest_and_refused, 60, interval=1, message=lambda: f"national: {_rows(fed)} "
                         f"refused {fed.status(NATIONAL)['reports']['refused']}")
        rows = {r["province"]: r for r in doc["federation"]}
        # Forged rows: none kept, whatever region, node or no node.
        r11, r46, r44, r45 = rows["11"], rows["46"], rows["44"], rows["45"]
        assert r11["via"] == "hub-bohai" and r11["records"] != FORGED_RECORDS, r11
        assert (r46["connected"], r46["records"], r46["last_report_age_s"], r46["self_reported"]) == \
            (False, None, None, []), r46
        for r in (r44, r45):
            assert r["via"] == "hub-pearl" and r["records"] != FORGED_RECORDS, r
        assert r45["rejects"] == fed.status("province-45")["quarantined"] + r45["national_rejects"], r45
        # The forged receiver row (46 blaming 45's deliveries) moved nothing.
        assert r45["delivery_p95_s"] is None or r45["delivery_p95_s"] < FORGED_DELAY_S, r45
        assert "province-46" not in r45["delivery_reported_by"], r45
        assert r44["delivery_reported_by"] == ["province-45"] and r44["delivery_p95_by"] == "province-45", r44
        # Labels: the province's own word, and what the national hub counted itself.
        held = fed.list(NATIONAL)
        for code, r in rows.items():
            if code in ("11", "44", "45"):
                assert "records" in r["self_reported"] and "backlog" in r["self_reported"], r
            mine = [p for p in held.values() if code in (p["household_province"], p["residence_province"])]
            assert r["national_records"] == len(mine), (code, r)
        claims = {c["hub"]: c for c in doc["hub_claims"]}
        assert set(claims) == {"hub-bohai", "hub-pearl"} and claims["hub-pearl"]["claim"] is True, claims
        # Refused, counted against the hub that sent it, logged once a minute without its data.
        assert "hub-bohai" not in doc["reports"]["refused"], doc["reports"]
        log = fed.fed.log_path(NATIONAL).read_text()
        assert "refused a report from hub-pearl" in log
        for p in held.values():
            assert p["name"] not in log and p["id_number"] not in log
        shown = yipanqi("status", "-c", fed.fed.configs[NATIONAL], env={"COLUMNS": "300"})
        assert shown.returncode == 0, shown.stderr
        human = shown.stdout
        assert "own word" in human and "backlog*" in human
        assert "each hub's own claim" in human and "hub-pearl" in human

        # A stopped node shows as down after ONLINE_S, while the rogue hub still relays (and replays)
        # its last signed report; the others stay up.
        fed.stop("province-45")
        eventually(lambda: not _rows(fed)["45"]["connected"], ONLINE_S + 20, interval=1,
                   message=lambda: f"45 still up at national: {_rows(fed)['45']}")
        rows = _rows(fed)
        assert rows["45"]["last_report_age_s"] >= ONLINE_S, rows["45"]
        assert rows["44"]["connected"] and rows["11"]["connected"], rows
        assert fed.fed.running("hub-pearl")
