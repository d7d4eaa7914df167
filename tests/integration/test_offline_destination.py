"""A destination node that is down: its hub queues exactly what is meant for
it, and when it comes back it catches up fully and the queue drains."""

from __future__ import annotations

import random

from tests.integration.conftest import Fed, eventually, person

N_RECORDS = 60
UPDATES_PER_RECORD = 2  # so N = 60 creates + 120 updates = 180 changes


def test_offline_destination_queues_then_catches_up(fresh_federation: Fed, rng: random.Random) -> None:
    fed = fresh_federation
    fed.stop("province-45")  # SIGTERM: a clean shutdown
    assert not fed.fed.running("province-45")

    ids = []
    for _ in range(N_RECORDS):
        ids.append(fed.write("province-44", "create", person(rng, household="45", residence="44"))["person_id"])
    for round_ in range(UPDATES_PER_RECORD):
        for pid in ids:
            fed.write("province-44", "update", {"children": round_ + 1,
                                                "residence_city": rng.choice(["广州市", "深圳市", "东莞市"])}, pid)
    n = N_RECORDS * (1 + UPDATES_PER_RECORD)
    # Records that do not involve 45 are not queued for it.
    other = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    fed.arrives("province-11", other["person_id"], other)

    def queued() -> dict:
        row = fed.destination("hub-pearl", "province-45")
        return row if row["queue"] == n else {}

    row = eventually(queued, 30, message=lambda: f"hub-pearl queue for province-45: "
                                                f"{fed.destination('hub-pearl', 'province-45')}, want {n}")
    assert row["connected"] is False
    assert row["oldest_age_s"] is not None
    assert fed.status("province-44")["outbox"]["changes"] == 0  # 44 handed everything over

    fed.start("province-45")
    expected = {pid: fed.get("province-44", pid) for pid in ids}

    def caught_up() -> bool:
        have = fed.list("province-45")
        return all(have.get(pid) == rec for pid, rec in expected.items())

    eventually(caught_up, 60, message="province-45 did not catch up with province-44")
    drained = eventually(lambda: (r := fed.destination("hub-pearl", "province-45"))["queue"] == 0 and r, 30,
                         message=lambda: f"queue did not drain: {fed.destination('hub-pearl', 'province-45')}")
    assert drained["connected"] is True

    # Exactly the queued changes arrived, each once.
    seen = []
    for pid in ids:
        seen += [(r["origin"], r["seq"]) for r in fed.history("province-45", pid)]
    assert len(seen) == n == len(set(seen))
    assert {o for o, _ in seen} == {"province-44"}
    assert fed.get("province-45", other["person_id"]) is None
    status = fed.status("province-45")
    assert status["records"] == N_RECORDS
    assert status["quarantined"] == 0
