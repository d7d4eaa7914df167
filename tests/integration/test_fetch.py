"""A delta whose dependency a hub dropped is parked, shown as waiting, then fetched (issue 10).

Hub-pearl runs the project's own hub code with one behaviour swapped (tests/support/rogue_hub.py,
``drop-creates-to-45``, through tests.support.launcher.Federation.entries): serving province 45 it
leaves out every record's create. What 45 then receives of such a record depends on the create,
so it is verified and parked (never refused, never capped), and 45 fetches the create by its id
from its hub: the record arrives whole, as 44 wrote it.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.integration.conftest import person, small_federation
from tests.integration.test_service import sample, scrape
from tests.support.launcher import Federation


def _dropping_pearl(fed: Federation) -> None:
    fed.entries["hub-pearl"] = ["tests.support.rogue_hub", "drop-creates-to-45"]


def test_a_dependency_a_hub_dropped_is_parked_shown_and_fetched(tmp_path: Path) -> None:
    rng = random.Random("fetch")
    with small_federation(tmp_path / "fed", ["44", "45"], configure=_dropping_pearl) as fed:
        created = fed.write("province-44", "create", person(rng, household="44", residence="45"))
        pid = created["person_id"]
        updated = fed.write("province-44", "update", {"children": 3}, pid)
        # 45 never got the create from its hub, yet ends with the whole record, as 44 has it.
        fed.arrives("province-45", pid, updated, timeout=60)
        assert fed.get("province-45", pid) == fed.get("province-44", pid)
        status = fed.status("province-45")
        assert status["parked"]["deltas"] == 0, status["parked"]
        # It was fetched, not delivered: 45 says so, and pearl counts what it gave.
        assert sample(scrape(fed, "province-45"), "yipanqi_fetches_total", outcome="answered") >= 1
        assert sample(scrape(fed, "hub-pearl"), "yipanqi_fetched_total", peer="province-45") >= 1



def test_a_change_a_hub_dropped_shows_as_a_gap_at_its_destination(tmp_path: Path) -> None:
    """Issue 17: each delta numbers what its author routed to each destination (chain, signed),
    so 45 tells a drop from a legitimate gap in 44's sequence numbers."""
    rng = random.Random("gap")
    with small_federation(tmp_path / "fed", ["44", "45"], configure=_dropping_pearl) as fed:
        intra = fed.write("province-44", "create", person(rng, household="44", residence="44"))  # never for 45
        lost = fed.write("province-44", "create", person(rng, household="44", residence="45"))  # dropped by pearl
        kept = fed.write("province-44", "create", person(rng, household="44", residence="45"))  # dropped, then ...
        kept = fed.write("province-44", "update", {"children": 1}, kept["person_id"])  # ... fetched with this
        fed.arrives("province-45", kept["person_id"], kept, timeout=60)
        assert fed.get("province-45", lost["person_id"]) is None
        assert fed.get("province-45", intra["person_id"]) is None
        # 44's seqs to 45 have a hole (the intra-province create) that is no gap; the dropped create is.
        assert fed.status("province-45")["gaps"] == {"province-44": [{"epoch": 0, "missing": [[1, 1]]}]}
        assert "gaps" not in fed.status("hub-national")  # the national hub got everything
