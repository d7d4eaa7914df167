"""Requests between provinces and the assessment of both sides, on a real federation of
provinces 11, 44 and 65 (each its own process, real mTLS gRPC, the CLI as an operator runs it).

In order, on one federation: a request from 44 to 65 is answered at 65 and seen answered at
44 and at the national hub, never at 11; the refusals (a province not involved in the person,
answering as the sender, closing as the receiver); an overdue request, sent by node 44
started "20 days ago" through the documented YIPANQI_TODAY seam (runtime/clock.py); then
`assess` on the national hub against figures computed by hand for everything written here,
and `report flows` --csv.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import signal
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from tests.integration.conftest import Fed, eventually, person, small_federation, yipanqi, yipanqi_ok
from yipanqi.v2 import admin_pb2 as apb

PROVINCES = ["11", "44", "65"]
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    with small_federation(tmp_path_factory.mktemp("req") / "fed", PROVINCES) as f:
        yield f


@pytest.fixture(scope="module")
def people(fed: Fed) -> dict[str, str]:
    """P1: household 65, lives in 44; P2: household 44, lives in 65; P3: household 11, lives in 44."""
    rng = random.Random(15)
    out = {}
    for name, writer, household, residence in (("P1", "44", "65", "44"), ("P2", "65", "44", "65"),
                                               ("P3", "44", "11", "44")):
        fields = {**person(rng, household, residence), "moved_in_on": TODAY.isoformat()}
        out[name] = write(fed, writer, "person", "create", fields)["person_id"]
    for pid in out.values():
        eventually(lambda: fed.get("hub-national", pid), 30, message=f"{pid} at the national hub")
    return out


def cfg(fed: Fed, identity: str) -> Path:
    return fed.fed.configs[identity]


def node(fed: Fed, code: str) -> Path:
    return cfg(fed, f"province-{code}")


def write(fed: Fed, code: str, kind: str, op: str, fields: dict[str, Any], record_id: str = "") -> dict[str, Any]:
    reply = fed.admin(f"province-{code}").Write(apb.WriteRequest(
        kind=kind, record_id=record_id, op=op, fields_json=json.dumps(fields, ensure_ascii=False)), timeout=30)
    return json.loads(reply.json)


def get_request(fed: Fed, identity: str, rid: str) -> dict[str, Any] | None:
    try:
        return json.loads(fed.admin(identity).Get(apb.RecordRef(kind="request", record_id=rid), timeout=10).json)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def show(fed: Fed, identity: str, rid: str) -> dict[str, Any]:
    return json.loads(yipanqi_ok("request", "show", "-c", cfg(fed, identity), rid, "--json"))


def send(fed: Fed, code: str, to: str, pid: str, *extra: object) -> str:
    return yipanqi_ok("request", "send", "-c", node(fed, code), "--to", to, "--person", pid,
                      "--subject", "核实婚姻状况", *extra).strip()


def refused(args: list[object], *needles: str) -> None:
    r = yipanqi(*args)
    assert r.returncode != 0, f"yipanqi {args} was accepted: {r.stdout}"
    for needle in needles:
        assert needle in r.stderr, r.stderr


def restart(fed: Fed, identity: str, env: dict[str, str] | None = None) -> None:
    fed.kill(identity, signal.SIGTERM)
    fed.fed.start(identity, wait=False, env=env)
    fed.fed.wait_healthy(identity, timeout=60)
    fed.wait_linked()


STATE: dict[str, str] = {}


def test_request_answered_at_65_seen_at_44_and_national_never_at_11(fed: Fed, people: dict[str, str]) -> None:
    rid = STATE["r1"] = send(fed, "44", "65", people["P1"], "--body", "请核实其婚姻状况")
    sent = show(fed, "province-44", rid)
    assert sent["from_province"] == "44" and sent["to_province"] == "65" and sent["to_side"] == "household"
    assert sent["state"] == "open" and sent["sent_on"] == TODAY.isoformat()
    assert sent["due_on"] == (TODAY + dt.timedelta(days=15)).isoformat() and sent["overdue"] is False
    eventually(lambda: get_request(fed, "province-65", rid), 30, message="request at 65")
    listed = json.loads(yipanqi_ok("request", "list", "-c", node(fed, "65"), "--open", "--json"))
    assert [r["request_id"] for r in listed] == [rid]
    assert yipanqi_ok("request", "answer", "-c", node(fed, "65"), rid, "--text", "已婚").startswith("answered")
    for identity in ("province-44", "hub-national"):
        eventually(lambda: (r := get_request(fed, identity, rid)) and r["state"] == "answered" and r["answer"] == "已婚"
                   and r["answered_on"] == TODAY.isoformat(), 30, message=f"answer at {identity}")
    assert show(fed, "hub-national", rid)["state"] == "answered"
    assert yipanqi_ok("request", "close", "-c", node(fed, "44"), rid).startswith("closed")
    eventually(lambda: (r := get_request(fed, "province-65", rid)) and r["state"] == "closed", 30)
    fed.quiet()
    assert get_request(fed, "province-11", rid) is None
    assert json.loads(yipanqi_ok("request", "list", "-c", node(fed, "11"), "--json")) == []


def test_refusals(fed: Fed, people: dict[str, str]) -> None:
    p1, p3 = people["P1"], people["P3"]
    # 11 is not involved in P1 (65 -> 44), and 65 not in P3 (11 -> 44): refused, nothing written.
    refused(["request", "send", "-c", node(fed, "44"), "--to", "11", "--person", p1, "--subject", "x"],
            "to_province", "not involved")
    refused(["request", "send", "-c", node(fed, "44"), "--to", "65", "--person", p3, "--subject", "x"],
            "to_province", "not involved")
    refused(["request", "send", "-c", node(fed, "44"), "--to", "65", "--person", p1, "--subject", "x",
             "--due-days", "-1"], "due-days")
    rid = STATE["r2"] = send(fed, "65", "44", people["P2"])  # 65 asks P2's household province 44
    eventually(lambda: get_request(fed, "province-44", rid), 30)
    refused(["request", "answer", "-c", node(fed, "65"), rid, "--text", "自问自答"],
            "only the receiving province 44 may answer")
    refused(["request", "close", "-c", node(fed, "44"), rid], "only the sending province 65 may close")
    refused(["request", "answer", "-c", node(fed, "11"), rid, "--text", "x"], "no request")
    assert show(fed, "province-65", rid)["state"] == "open"
    assert json.loads(yipanqi_ok("request", "list", "-c", node(fed, "44"), "--json")) != []
    fed.quiet()
    assert all(fed.quarantine(i) == [] for i in ("province-44", "province-65", "hub-national"))


def test_overdue_request(fed: Fed, people: dict[str, str]) -> None:
    past = TODAY - dt.timedelta(days=20)
    restart(fed, "province-44", {"YIPANQI_TODAY": past.isoformat()})
    rid = STATE["r3"] = send(fed, "44", "65", people["P1"], "--due-days", "3")
    assert show(fed, "province-44", rid)["due_on"] == (past + dt.timedelta(days=3)).isoformat()
    eventually(lambda: get_request(fed, "province-65", rid), 30)
    overdue = json.loads(yipanqi_ok("request", "list", "-c", node(fed, "65"), "--overdue", "--json"))
    assert [r["request_id"] for r in overdue] == [rid] and overdue[0]["overdue"] is True
    st = fed.status("province-65")["requests"]
    assert st == {"received_open": 1, "received_overdue": 1, "sent_open": 1, "sent_overdue": 0}
    restart(fed, "province-44")  # back to the real date: its own request is overdue there too
    assert fed.status("province-44")["requests"] == {"received_open": 1, "received_overdue": 0,
                                                     "sent_open": 1, "sent_overdue": 1}
    assert "1 open, 1 overdue" in yipanqi_ok("status", "-c", node(fed, "44"))


def test_assess_against_hand_computed_figures(fed: Fed, people: dict[str, str], tmp_path: Path) -> None:
    p1, p2 = people["P1"], people["P2"]
    day = TODAY.isoformat()
    yipanqi_ok("service", "add", "-c", node(fed, "44"), p1, "--type", "pregnancy_check", "--on", day)
    doc1, doc2 = tmp_path / "c1.json", tmp_path / "c2.json"
    yipanqi_ok("certificate", "issue", "-c", node(fed, "65"), p1, "--out", doc1)  # issued by P1's household 65
    cert2 = yipanqi_ok("certificate", "issue", "-c", node(fed, "44"), p2, "--out", doc2).strip()
    yipanqi_ok("certificate", "revoke", "-c", node(fed, "44"), cert2, "--reason", "补发")
    # Checked at 44 (where P1 lives): recorded as a certificate_check service given by 44.
    eventually(lambda: yipanqi("certificate", "verify", str(doc1), "-c", node(fed, "44")).returncode == 0, 30,
               message="the certificate verifies at 44")
    fed.quiet()
    weights = tmp_path / "weights.toml"
    weights.write_text("[weights]\ncoverage = 30\nresidence_answers = 25\nhousehold_answers = 25\n"
                       "delivery = 0\nclean = 20\n")
    out_csv = tmp_path / "assess.csv"
    national = cfg(fed, "hub-national")

    def figures() -> dict[str, Any]:
        return json.loads(yipanqi_ok("assess", "-c", national, "--weights", weights, "--json", "--csv", out_csv))

    def ready(doc: dict[str, Any]) -> bool:
        by = {p["province"]: p for p in doc["provinces"]}
        return by["44"]["household"]["certificates_revoked"] == 1 and by["65"]["household"]["certificates_issued"] == 1

    doc = eventually(lambda: (d := figures()) and ready(d) and d, 30)
    by = {p["province"]: p for p in doc["provinces"]}
    none = {"received": 0, "answered_on_time": 0, "overdue": 0, "median_answer_days": None}
    # By hand: 44 hosts P1 and P3 (one served, one certificate checked), is P2's household province
    # (one certificate issued and revoked) and received r2 (open, not yet due).
    assert by["44"]["residence"] == {"migrants": 2, "served": 1, "coverage": 0.5, "certificates_verified": 1,
                                     "requests": none}
    assert by["44"]["household"] == {"living_elsewhere": 1, "certificates_issued": 1, "certificates_revoked": 1,
                                     "requests": {**none, "received": 1}}
    # 65 hosts P2 (no service), is P1's household province (one certificate), received r1 (answered the
    # day it was sent: on time, 0 days) and r3 (sent 20 days ago, due 17 days ago, unanswered: overdue).
    assert by["65"]["residence"] == {"migrants": 1, "served": 0, "coverage": 0.0, "certificates_verified": 0,
                                     "requests": none}
    assert by["65"]["household"] == {"living_elsewhere": 1, "certificates_issued": 1, "certificates_revoked": 0,
                                     "requests": {"received": 2, "answered_on_time": 1, "overdue": 1,
                                                  "median_answer_days": 0}}
    assert by["11"]["household"]["living_elsewhere"] == 1 and by["11"]["residence"]["migrants"] == 0
    assert all(p["federation"]["quarantined"] == 0 for p in doc["provinces"])
    assert len(doc["provinces"]) == 32 and doc["weights"]["weights"]["clean"] == 20
    # Scores with these weights: 44 = (0.5*30 + 0*25 + 1*20) / 75; 65 = (0*30 + 0.5*25 + 1*20) / 75;
    # 11 and the provinces with nothing to assess get none and come last.
    ranked = [(p["province"], p["score"]) for p in doc["provinces"]]
    assert ranked[:2] == [("44", 46.7), ("65", 43.3)] and all(s is None for _, s in ranked[2:])
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert rows[0]["province"] == "44" and rows[0]["score"] == "46.7" and rows[0]["residence.coverage"] == "0.5"
    assert rows[1]["household.requests.overdue"] == "1"
    table = yipanqi_ok("assess", "-c", national)  # the national weights file beside hub.toml
    assert "双向考核" in table and "广东" in table
    # A period before anything was sent: no requests counted; a bad date is refused by name.
    early = json.loads(yipanqi_ok("assess", "-c", national, "--to", (TODAY - dt.timedelta(days=30)).isoformat(),
                                  "--json"))
    assert all(p["household"]["requests"]["received"] == 0 for p in early["provinces"])
    # Delivery delays from the national hub's own log: 44's and 65's changes reached it; none in the early period.
    for code in ("44", "65"):
        d = by[code]["federation"]
        assert d["delivery_changes"] > 0 and 0 <= d["delivery_p50_s"] <= d["delivery_p95_s"], d
    assert all(p["federation"]["delivery_changes"] == 0 and p["federation"]["delivery_p95_s"] is None
               for p in early["provinces"])
    refused(["assess", "-c", national, "--from", "2026-13-01"], "from", "not a date")
    # At node 44: itself and its counterparts only.
    mine = json.loads(yipanqi_ok("assess", "-c", node(fed, "44"), "--json"))
    assert {p["province"] for p in mine["provinces"]} == {"11", "44", "65"}
    at44 = {p["province"]: p["federation"] for p in mine["provinces"]}
    assert at44["65"]["delivery_changes"] > 0 and at44["44"]["delivery_p50_s"] is None  # none for its own changes
    # The flows matrix, as CSV.
    flows = tmp_path / "flows.csv"
    yipanqi_ok("report", "flows", "-c", national, "--csv", flows, "--out", tmp_path / "flows.png")
    matrix = {r["household"]: r for r in csv.DictReader(flows.open(encoding="utf-8"))}
    assert (matrix["65"]["44"], matrix["44"]["65"], matrix["11"]["44"], matrix["44"]["11"]) == ("1", "1", "1", "0")
    assert (tmp_path / "flows.png").read_bytes()[:4] == b"\x89PNG"
    # The other formats through the command, and --from/--to: every person here moved in today.
    yipanqi_ok("report", "flows", "-c", national, "--out", tmp_path / "flows.svg")
    yipanqi_ok("report", "flows", "-c", national, "--out", tmp_path / "flows.html")
    assert b"<svg" in (tmp_path / "flows.svg").read_bytes()[:2000]
    page = (tmp_path / "flows.html").read_text(encoding="utf-8")
    assert "<html" in page[:500].lower() and page.rstrip().lower().endswith("</html>") and "plotly" in page
    for period, moved in ((("--from", day, "--to", day), ("1", "1", "1")),
                          (("--to", (TODAY - dt.timedelta(days=1)).isoformat()), ("0", "0", "0"))):
        yipanqi_ok("report", "flows", "-c", national, "--csv", flows, *period)
        matrix = {r["household"]: r for r in csv.DictReader(flows.open(encoding="utf-8"))}
        assert (matrix["65"]["44"], matrix["44"]["65"], matrix["11"]["44"]) == moved, period
