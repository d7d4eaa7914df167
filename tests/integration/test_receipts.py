"""Receipts travel back to their authors (issue 17): what a destination holds settles what the
author owes it, and what a hub withholds is seen by the author, naming that hub.

Real processes over mTLS: 44 and 45 behind hub-pearl. Every delta numbers what 44 routes to each
destination (`chain`); 45 signs a cumulative receipt of what it holds from 44 and sends it up its
Push; the hubs carry it to 44 (runtime/receiptroute.py), which verifies it by 45's signing
certificate and settles what it covers (runtime/receipts.py). With pearl swapped for a hub that
drops creates on their way to 45 (tests/support/rogue_hub.py), 44's `status` shows 45's oldest
unreceipted change, past `[timing].receipt_alert_s` as an alert naming hub-pearl.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.integration.conftest import eventually, person, small_federation
from tests.support.launcher import TEST_TIMING, Federation

ALERT_S = TEST_TIMING["receipt_alert_s"]


def test_a_destinations_receipt_settles_what_its_author_owes(tmp_path: Path) -> None:
    rng = random.Random("receipts")
    with small_federation(tmp_path / "fed", ["44", "45"]) as fed:
        for _ in range(3):
            rec = fed.write("province-44", "create", person(rng, household="44", residence="45"))
        fed.arrives("province-45", rec["person_id"], rec, timeout=60)
        # 45's signed receipt reached 44 through pearl and settled all three; nothing is owed.
        eventually(lambda: "receipts" not in fed.status("province-44"), 30,
                   message=lambda: f"still owed: {fed.status('province-44').get('receipts')}")
        assert "gaps" not in fed.status("province-45")


def _dropping_pearl(fed: Federation) -> None:
    fed.entries["hub-pearl"] = ["tests.support.rogue_hub", "drop-creates-to-45"]


def test_a_change_a_hub_withholds_is_an_alert_at_its_author_naming_that_hub(tmp_path: Path) -> None:
    rng = random.Random("withheld")
    with small_federation(tmp_path / "fed", ["44", "45"], configure=_dropping_pearl) as fed:
        lost = fed.write("province-44", "create", person(rng, household="44", residence="45"))
        assert fed.get("province-45", lost["person_id"]) is None

        def alerted() -> dict | None:
            row = (fed.status("province-44").get("receipts") or {}).get("45")
            return row if row and row["alert"] else None

        row = eventually(alerted, ALERT_S + 30, message=lambda: f"{fed.status('province-44').get('receipts')}")
        assert row["via"] == "hub-pearl" and row["owed"] == 1 and row["oldest_age_s"] >= ALERT_S, row
        # Meanwhile what pearl did deliver is receipted: a later update, fetched with its create.
        kept = fed.write("province-44", "create", person(rng, household="44", residence="45"))
        kept = fed.write("province-44", "update", {"children": 1}, kept["person_id"])
        fed.arrives("province-45", kept["person_id"], kept, timeout=60)
        eventually(lambda: (fed.status("province-44").get("receipts") or {}).get("45", {}).get("owed") == 1, 30)
