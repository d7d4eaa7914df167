"""A node whose home hub dies syncs through its fallback (the national hub),
returns home when the hub is back, and no change is ever applied twice."""

from __future__ import annotations

import random
import signal

from tests.integration.conftest import Fed, eventually, person

NATIONAL = "hub-national"


def _once(fed: Fed, identity: str, pid: str) -> list[tuple[str, int]]:
    rows = [(r["origin"], r["seq"]) for r in fed.history(identity, pid)]
    assert len(rows) == len(set(rows)), f"{identity} applied a change of {pid} twice: {rows}"
    return rows


def test_node_syncs_through_fallback_while_home_hub_is_down(fresh_federation: Fed, rng: random.Random) -> None:
    fed = fresh_federation
    before = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    fed.arrives("province-11", before["person_id"], before)

    fed.kill("hub-pearl", signal.SIGKILL)

    def on_fallback() -> dict:
        hub = fed.status("province-44")["hub"]
        return hub if hub["connected"] and hub["fallback"] else {}

    hub = eventually(on_fallback, 30, message=lambda: f"44 link: {fed.status('province-44')['hub']}")
    assert hub["hub"] == "national" and hub["home"] == "pearl"

    during = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    to_45 = fed.write("province-44", "create", person(rng, household="45", residence="44"))
    edit = fed.write("province-44", "update", {"children": 3}, before["person_id"])
    fed.arrives("province-11", during["person_id"], during)
    fed.arrives("province-11", before["person_id"], edit)
    fed.arrives("province-45", to_45["person_id"], to_45)  # 45 fell back too
    assert not fed.fed.running("hub-pearl")
    eventually(on_fallback, 30, message="44's status does not report its fallback while pearl is down")
    assert [r["via"] for r in fed.history("province-11", during["person_id"])] == ["hub-bohai"]

    fed.start("hub-pearl")
    # 44 goes home (after its fallback session's recheck interval).
    eventually(lambda: not fed.status("province-44")["hub"]["fallback"]
               and fed.status("province-44")["hub"]["connected"], 45,
               message=lambda: f"44 link: {fed.status('province-44')['hub']}")

    after = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    final_edit = fed.write("province-44", "update", {"children": 4}, during["person_id"])
    from_45 = fed.write("province-45", "update", {"residence_city": "深圳市"}, to_45["person_id"])
    records = {after["person_id"]: after, during["person_id"]: final_edit,
               before["person_id"]: edit, to_45["person_id"]: from_45}
    holders = {after["person_id"]: ("province-11",), during["person_id"]: ("province-11",),
               before["person_id"]: ("province-11",), to_45["person_id"]: ("province-45",)}
    for pid, rec in records.items():
        for identity in ("province-44", NATIONAL, *holders[pid]):
            fed.arrives(identity, pid, rec, timeout=45)
    fed.quiet()

    # Every (origin, seq) once everywhere, and the same set everywhere.
    for pid in records:
        want = _once(fed, "province-44", pid)
        for identity in (NATIONAL, *holders[pid]):
            assert sorted(_once(fed, identity, pid)) == sorted(want), f"{identity} history of {pid}"
    # hub-pearl learnt what 44 pushed to national while it was down (from national), once.
    assert sorted(_once(fed, "hub-pearl", during["person_id"])) == sorted(
        _once(fed, "province-44", during["person_id"]))
    for identity in ("province-11", "province-44", "province-45", NATIONAL, "hub-pearl"):
        assert fed.status(identity)["quarantined"] == 0, f"{identity} quarantined something"
