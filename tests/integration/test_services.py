"""Service records across real processes (provinces 11, 44, 65; hubs national, bohai, pearl,
northwest): a service given at the residence province 44 reaches the household province 65
and the national database and never 11; a move carries the person's service history (and
certificates) to the new residence, a service added at 65 while the move is on its way
included; every refusal names the field and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.integration.conftest import Fed, eventually, person, small_federation, yipanqi, yipanqi_ok
from yipanqi.v2 import admin_pb2 as apb

PROVINCES = ["11", "44", "65"]
NATIONAL = "hub-national"
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    with small_federation(tmp_path_factory.mktemp("svcfed"), PROVINCES) as f:
        yield f


def cfg(fed: Fed, identity: str) -> Path:
    return fed.fed.configs[identity]


def days_ago(n: int) -> str:
    return (TODAY - dt.timedelta(days=n)).isoformat()


def add(fed: Fed, identity: str, pid: str, type_: str, on: str, *extra: str) -> str:
    return yipanqi_ok("service", "add", "-c", cfg(fed, identity), pid, "--type", type_, "--on", on, *extra).strip()


def services(fed: Fed, identity: str, pid: str) -> list[dict]:
    return json.loads(yipanqi_ok("service", "list", "-c", cfg(fed, identity), pid, "--json"))


def service_record(fed: Fed, identity: str, sid: str) -> dict | None:
    try:
        return json.loads(fed.admin(identity).Get(apb.RecordRef(kind="service", record_id=sid), timeout=10).json)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def migrant(fed: Fed, rng: random.Random, at: str = "province-44") -> str:
    created = fed.write(at, "create", person(rng, household="65", residence="44"))
    pid = created["person_id"]
    fed.arrives("province-65" if at == "province-44" else "province-44", pid, created)
    return pid


def test_a_service_given_at_44_reaches_65_and_national_and_never_11(fed: Fed, rng: random.Random) -> None:
    pid = migrant(fed, rng)
    sid = add(fed, "province-44", pid, "pregnancy_check", days_ago(3), "--result", "正常")
    (mine,) = services(fed, "province-44", pid)
    assert mine == {"service_id": sid, "person_id": pid, "type": "pregnancy_check", "on": days_ago(3),
                    "result": "正常", "provider_province": "44", "household_province": "65",
                    "residence_province": "44"}
    for where in ("province-65", NATIONAL):
        assert eventually(lambda: services(fed, where, pid)) == [mine]
    # More, given in another order than their dates, one by the household province: oldest first everywhere.
    later = add(fed, "province-44", pid, "contraceptive_service", days_ago(1))
    earlier = add(fed, "province-65", pid, "reproductive_health", days_ago(30))
    for where in ("province-44", "province-65", NATIONAL):
        eventually(lambda: [s["service_id"] for s in services(fed, where, pid)] == [earlier, sid, later])
    # The table form names the types in Chinese.
    table = yipanqi_ok("service", "list", "-c", cfg(fed, "province-65"), pid)
    assert "孕检" in table and "避孕节育" in table and "生殖健康检查" in table

    fed.quiet()
    for s in (sid, later, earlier):
        assert service_record(fed, "province-11", s) is None  # never at a province not involved
    assert [q for q in fed.quarantine("province-11") if q["record_id"] in (sid, later, earlier)] == []
    with pytest.raises(grpc.RpcError) as exc:  # 11's hub was never even given the changes
        fed.admin("hub-bohai").History(apb.RecordRef(kind="service", record_id=sid), timeout=10)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    r = yipanqi("service", "list", "-c", cfg(fed, "province-11"), pid)
    assert r.returncode == 1 and f"person_id: no person {pid} is held at province-11" in r.stderr


@pytest.mark.parametrize("mover, via", [("province-44", "write"), ("province-65", "write"),
                                        ("province-44", "import")])
def test_a_move_carries_the_service_history_to_the_new_residence(fed: Fed, rng: random.Random, tmp_path: Path,
                                                                 mover: str, via: str) -> None:
    pid = migrant(fed, rng)
    given = [add(fed, "province-44", pid, "pregnancy_check", days_ago(40)),
             add(fed, "province-65", pid, "birth", days_ago(20)),
             add(fed, "province-44", pid, "contraceptive_service", days_ago(10))]
    doc = tmp_path / "cert.json"
    cert_no = yipanqi_ok("certificate", "issue", "-c", cfg(fed, "province-65"), pid, "--out", doc).strip()
    eventually(lambda: [s["service_id"] for s in services(fed, mover, pid)] == given)
    eventually(lambda: (fed.get(mover, pid) or {}).get("marriage_cert_no") == cert_no)
    r = yipanqi("certificate", "verify", doc, "-c", cfg(fed, "province-11"))
    assert r.returncode == 1 and "holds no record of the holder" in r.stderr  # 11 knows nothing yet

    change = {"residence_province": "11", "residence_city": "北京市"}
    if via == "write":
        moved = fed.write(mover, "update", change, pid)
    else:  # the Admin API's bulk path (Import) takes updates too, and moves the followers the same way
        (report,) = fed.admin(mover).Import(iter([apb.ImportChunk(rows=[apb.WriteRequest(
            kind="person", op="update", record_id=pid, fields_json=json.dumps(change, ensure_ascii=False),
            line=1)])]), timeout=30)
        assert [r.error for r in report.results] == [""], report
        moved = fed.get(mover, pid)
    fed.arrives("province-11", pid, moved)
    # The whole history arrives with the person, rewritten to route to the new residence.
    history = eventually(lambda: (h := services(fed, "province-11", pid)) and
                         [s["service_id"] for s in h] == given and h)
    assert {s["residence_province"] for s in history} == {"11"}
    assert [s["provider_province"] for s in history] == ["44", "65", "44"]  # who gave it does not change
    # So does the certificate: the new residence checks it against its own replica.
    r = eventually(lambda: (v := yipanqi("certificate", "verify", doc, "-c", cfg(fed, "province-11"))).returncode == 0
                   and v)
    assert r.stdout.strip().endswith("status at province-11: issued")
    # 11 may now record services; the old residence, no longer involved, may not.
    new = add(fed, "province-11", pid, "reproductive_health", days_ago(0))
    for where in ("province-65", NATIONAL):
        # Oldest first: the three given before, then today's two (the check at 11, and this one).
        eventually(lambda: (ids := [s["service_id"] for s in services(fed, where, pid)])[:3] == given
                   and new in ids[3:] and len(ids) == 5)
    r = yipanqi("service", "add", "-c", cfg(fed, "province-44"), pid, "--type", "birth", "--on", days_ago(0))
    assert r.returncode == 1 and "provider_province: province 44 is not involved" in r.stderr


def test_a_service_added_while_the_move_is_on_its_way_still_reaches_the_new_residence(fed: Fed,
                                                                                      rng: random.Random) -> None:
    """The race: 65 adds a service with the old residence 44 just as 44 records the move to 11.
    44 moved only the services it held; 65, once the move reaches it, rewrites its own (node.refollow)."""
    pid = migrant(fed, rng)
    held = add(fed, "province-44", pid, "pregnancy_check", days_ago(5))  # 44 holds it: moves with the person
    eventually(lambda: [s["service_id"] for s in services(fed, "province-65", pid)] == [held])
    hub = fed.fed.procs["hub-northwest"]  # 65's home hub, frozen: 65 hears nothing until it is thawed
    hub.send_signal(signal.SIGSTOP)
    try:
        moved = fed.write("province-44", "update", {"residence_province": "11", "residence_city": "北京市"}, pid)
        late = add(fed, "province-65", pid, "birth", days_ago(1))
        # 65 has not seen the move: its new service carries the residence it knows.
        assert (fed.get("province-65", pid) or {}).get("residence_province") == "44"
        assert (service_record(fed, "province-65", late) or {}).get("residence_province") == "44"
    finally:
        hub.send_signal(signal.SIGCONT)
    fed.arrives("province-11", pid, moved)
    eventually(lambda: (service_record(fed, "province-11", late) or {}).get("residence_province") == "11",
               message=lambda: f"{late} at province-11: {service_record(fed, 'province-11', late)}")
    fed.quiet()
    copies = {where: service_record(fed, where, late)
              for where in ("province-11", "province-44", "province-65", NATIONAL)}
    assert all(c == copies["province-11"] for c in copies.values()), copies
    assert copies["province-11"]["_meta"]["conflicts"] == {}
    assert (copies["province-11"]["household_province"], copies["province-11"]["provider_province"]) == ("65", "65")
    for where in ("province-11", "province-65", NATIONAL):
        assert [(s["service_id"], s["residence_province"]) for s in services(fed, where, pid)] == \
            [(held, "11"), (late, "11")]


def test_every_refusal_names_the_field_and_writes_nothing(fed: Fed, rng: random.Random) -> None:
    pid = migrant(fed, rng)
    fed.quiet()
    seqs = {p: fed.status(f"province-{p}")["last_seq"] for p in PROVINCES}
    n44 = cfg(fed, "province-44")
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    cases = [
        (n44, pid, "massage", days_ago(1), [], "type: must be one of pregnancy_check, contraceptive_service"),
        (n44, pid, "certificate_check", days_ago(1), [], "type: certificate_check is recorded by"),
        (n44, pid, "pregnancy_check", tomorrow, [], f"on: date {tomorrow} is in the future"),
        (n44, pid, "pregnancy_check", "2026-02-30", [], "on: 2026-02-30 is not a valid date"),
        (n44, pid, "pregnancy_check", "yesterday", [], "on: must be a date YYYY-MM-DD"),
        (n44, pid, "pregnancy_check", "1900-01-01", [], "on: 1900-01-01 is before the person's birth date"),
        (n44, pid, "pregnancy_check", days_ago(1), ["--result", "x" * 257], "result: must be at most 256"),
        (n44, pid, "pregnancy_check", days_ago(1), ["--result", "a\x1bb"], "result: must not contain control"),
        (n44, "not-a-uuid", "pregnancy_check", days_ago(1), [], "person_id: no person not-a-uuid is held"),
        (cfg(fed, "province-11"), pid, "pregnancy_check", days_ago(1), [],
         f"person_id: no person {pid} is held at province-11"),
    ]
    for config, who, type_, on, extra, message in cases:
        r = yipanqi("service", "add", "-c", config, who, "--type", type_, "--on", on, *extra)
        assert r.returncode == 1 and r.stdout == "", (type_, on, r.stdout, r.stderr)
        assert message in r.stderr, (message, r.stderr)
    # Not around the rules through the generic Write: a service copies the person's provinces.
    with pytest.raises(grpc.RpcError) as exc:
        fed.admin("province-44").Write(apb.WriteRequest(kind="service", op="create", fields_json=json.dumps(
            {"person_id": pid, "type": "birth", "on": days_ago(1), "provider_province": "44",
             "household_province": "44"})), timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kind: service records are written by `yipanqi service ...`" in exc.value.details()
    # Hubs record nothing; a regional hub, holding no records, lists nothing either.
    with pytest.raises(grpc.RpcError) as exc:
        fed.admin(NATIONAL).AddService(apb.AddServiceRequest(person_id=pid, type="birth", on=days_ago(1)), timeout=10)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    r = yipanqi("service", "list", "-c", cfg(fed, "hub-pearl"), pid)
    assert r.returncode == 1 and "regional hubs hold no records" in r.stderr
    time.sleep(0.5)
    assert {p: fed.status(f"province-{p}")["last_seq"] for p in PROVINCES} == seqs
    assert services(fed, "province-44", pid) == []
