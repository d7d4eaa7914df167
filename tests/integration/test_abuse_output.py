"""Abuse of output, files and logs, against real processes (issue 11: output hygiene, files and logs).

Terminal and markup injection: a record whose name holds ``ESC [2J``, an OSC title sequence, a C1
CSI (U+009B), ``[/]`` and ``[link=...]``, written by an operator whose name holds an OSC, and a
concurrent version of it, must print escaped (and never crash Rich) in ``person show / list /
history`` at the other province, in ``conflicts list`` at the national hub, and a peer's report
full of them in the national ``status``. Since this release refuses such text at write time, the
records are what a province holds that received them before the upgrade: signed by province 44's
own key and ingested into the stores of 45 and the national hub (the same ``Store.ingest`` a
pulled batch goes through) before those processes start. Such a record is not frozen either: 45
can still edit it. Node 44 never runs; the test plays it, with its own certificates.

CSV: export neutralises formula cells and import takes the quote off again (a round trip); an
oversized line or field is refused as FILE:LINE and the rows after it load. Files: stores, WAL,
SHM, backups and exports are 0600 and their directories 0700 under umask 022. Logs: after
refused writes, the node's log names the field and the rule, never a name, ID number or birth date.

One small federation for the module: hub-national, hub-pearl and node 45 (44 only has credentials).
"""

from __future__ import annotations

import csv
import json
import os
import random
import stat
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import grpc
import pytest

from certs.signing import Signer
from runtime.config import load_any
from tests.support.launcher import Federation
from core.change import Envelope
from core.delta import Delta, delta_id
from core.hlc import Timestamp
from core.kinds import graph_rules
from core.person import FIELDS, validate_person
from runtime import wire
from runtime.replica import now_ms
from store.store import ReceivedDelta, Store
from tests.integration.conftest import Fed, RawPush, eventually, person, running, yipanqi
from tests.integration.test_attacks import peer_channel, push
from yipanqi.v2 import federation_pb2 as fpb

NATIONAL, PEARL, N45 = "hub-national", "hub-pearl", "province-45"

NAME = "\x1b[2J\x1b[31m张伟\x1b]0;pwned\x07\u009b31m[/][link=http://x]y[/link]"
NAME_SHOWN = "\\x1b[2J\\x1b[31m张伟\\x1b]0;pwned\\x07\\x9b31m[/][link=http://x]y[/link]"
OTHER = "[/]\u009b2J李\u202e"
OTHER_SHOWN = "[/]\\x9b2J李\\u202e"
OPERATOR = "operator-44-\x1b]0;pwned\x07admin"
OPERATOR_SHOWN = "operator-44-\\x1b]0;pwned\\x07admin"
WIDE = {"COLUMNS": "1000"}  # tables wide enough to show whole values


def raw_unsafe(out: str) -> list[str]:
    """Characters a terminal would act on: control (but newline), format, separators, surrogates."""
    return [f"U+{ord(c):04X}" for c in out
            if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


def cli(*args: object) -> tuple[int, str]:
    r = yipanqi(*args, env=WIDE)
    return r.returncode, r.stdout + r.stderr


def shows(*args: object) -> str:
    code, out = cli(*args)
    assert code == 0, out
    assert raw_unsafe(out) == [], out
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the federation, with legacy records in the stores of 45 and national ---------------------------


def _signed(fed: Federation, code: str, change: Delta) -> ReceivedDelta:
    d = fed.root / "nodes" / code
    signer = Signer.load(d / "sign.key", d / "sign.crt")
    body = change.to_body()
    (seal,) = signer.seal_batch([body])
    return ReceivedDelta(delta_id(body), change, Envelope(body, seal, change.openings()), f"province-{code}")


def _create(origin: str, seq: int, record_id: str, values: dict[str, object], operator: str | None,
            kind: str = "person") -> Delta:
    """A create delta by ``origin``, routed to the provinces its values name."""
    rules = graph_rules(kind)
    values = {**{k: v for k, v in values.items() if v is not None}, "_deleted": False}
    routes = rules.involved({k: v for k, v in values.items() if k in rules.routing_fields})
    return Delta(kind, record_id, origin, 0, seq, Timestamp(now_ms(), 0, origin), "create", operator, (), (), values,
                 frozenset(routes), {})


def _ingest(fed: Federation, identity: str, accepted: list[ReceivedDelta]) -> None:
    """What an older release stored on receiving these deltas (before its process starts): its
    intake did not yet refuse control characters in text, so the values are stored as sent."""
    cfg = load_any(fed.configs[identity])
    hub = identity.startswith("hub-")
    store = Store.open(cfg.database, owner=identity, index_routes=hub, hold_records=True)
    try:
        result = store.ingest(accepted, [], via=PEARL, now_ms=now_ms())
        assert result.applied == len(accepted), result
    finally:
        store.close()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    old_umask = os.umask(0o022)
    try:
        root = tmp_path_factory.mktemp("abuse-output")
        federation = Federation.create(root / "fed", ["44", "45"])
        rng = random.Random("abuse-output")
        clean = validate_person(person(rng, household="45", residence="44"), today=date.today())
        rid, rid2 = str(uuid.uuid4()), str(uuid.uuid4())
        c1 = _signed(federation, "44", _create("province-44", 1, rid, {**clean, "name": NAME}, OPERATOR))
        c2 = _signed(federation, "45", _create("province-45", 10**6, rid, {**clean, "name": OTHER}, None))
        c3 = _signed(federation, "44", _create("province-44", 2, rid2, {**clean, "contraception": NAME}, OPERATOR))
        today = date.today()
        req = str(uuid.uuid4())  # a request about the record, from 44 to 45, hostile subject and body
        c4 = _signed(federation, "44", _create(
            "province-44", 3, req, kind="request", operator=OPERATOR,
            values={"from_province": "44", "to_province": "45", "to_side": "household", "person_id": rid,
                    "subject": NAME, "body": OTHER, "sent_on": today.isoformat(),
                    "due_on": (today + timedelta(days=15)).isoformat(), "state": "open"}))
        _ingest(federation, N45, [c1, c3, c4])
        _ingest(federation, NATIONAL, [c1, c2])
        f = Fed(federation)

        def start() -> None:
            for tier in ([NATIONAL], [PEARL], [N45]):
                for identity in tier:
                    federation.start(identity, wait=False)
                for identity in tier:
                    federation.wait_healthy(identity, timeout=60)
            f.wait_linked(timeout=60)

        with running(f, start):
            f.ids = {"record": rid, "legacy": rid2, "clean": clean, "request": req}  # type: ignore[attr-defined]
            yield f
    finally:
        os.umask(old_umask)


# -- terminal and markup injection --------------------------------------------------------------------


def test_a_hostile_name_received_from_a_peer_prints_escaped_at_the_other_province(fed: Fed) -> None:
    rid = fed.ids["record"]  # type: ignore[attr-defined]
    config = fed.fed.configs[N45]
    assert fed.get(N45, rid)["name"] == NAME  # the stored value, exactly
    out = shows("person", "show", "-c", config, rid)
    assert NAME_SHOWN in out
    out = shows("person", "list", "-c", config)
    assert NAME_SHOWN[:11] in out  # escaped (the list's name column cuts long names); `[/]` did not crash Rich
    out = shows("person", "history", "-c", config, rid)
    assert OPERATOR_SHOWN in out  # the OSC title sequence in the operator's name
    # --json stays exact: the same value, with the escapes JSON has for it.
    code, out = cli("person", "show", "-c", config, rid, "--json")
    assert code == 0 and raw_unsafe(out) == [] and json.loads(out)["name"] == NAME
    code, out = cli("person", "history", "-c", config, rid, "--json")
    assert code == 0 and raw_unsafe(out) == [] and json.loads(out)[0]["operator"] == OPERATOR


def test_a_hostile_request_prints_escaped_in_request_list_and_show(fed: Fed) -> None:
    """Issue 15's request commands show a peer's subject and body escaped, and --json exact."""
    req, config = fed.ids["request"], fed.fed.configs[N45]  # type: ignore[attr-defined]
    out = shows("request", "show", "-c", config, req)
    assert NAME_SHOWN in out and OTHER_SHOWN in out
    out = shows("request", "list", "-c", config)
    assert req in out and NAME_SHOWN[:11] in out
    for args in (("show", req), ("list",)):
        code, out = cli("request", *args[:1], "-c", config, *args[1:], "--json")
        doc = json.loads(out)
        assert code == 0 and raw_unsafe(out) == [], out
        assert (doc if isinstance(doc, dict) else doc[0])["subject"] == NAME


def test_a_hostile_conflict_prints_escaped_at_the_national_hub(fed: Fed) -> None:
    rid = fed.ids["record"]  # type: ignore[attr-defined]
    config = fed.fed.configs[NATIONAL]
    record = fed.get(NATIONAL, rid)
    assert {v["value"] for v in record["_meta"]["conflicts"]["name"]} == {NAME, OTHER}
    for args in (("conflicts", "list"), ("conflicts", "show", rid), ("person", "show", rid)):
        out = shows(*args[:2], "-c", config, *args[2:])
        assert NAME_SHOWN in out and OTHER_SHOWN in out, (args, out)
    out = shows("person", "list", "-c", config)
    assert NAME_SHOWN[:9] in out or OTHER_SHOWN[:9] in out  # the list's name column cuts long names
    code, out = cli("conflicts", "list", "-c", config, "--json")
    assert code == 0 and raw_unsafe(out) == []
    assert {v["value"] for v in json.loads(out)[0]["versions"]} == {NAME, OTHER}


def test_a_hostile_report_prints_escaped_in_the_national_status(fed: Fed) -> None:
    """Province 44 (its own certificate; it may fall back to the national hub) reports junk."""
    report = {"at_ms": now_ms(), "records": NAME, "backlog": NAME, "oldest_age_s": OTHER, "max_lag_s": "[/]",
              "conflicts": "[link=http://x]z[/link]"}
    with peer_channel(fed, "province-44", NATIONAL) as channel:
        stream = RawPush(channel)
        assert stream.exchange(fpb.PushRequest(hello=wire.hello("province-44"))).WhichOneof("msg") == "hello"
        stream.send(fpb.PushRequest(report=fpb.Report(json=json.dumps(report))))
        # Messages on a stream are handled in order: once this batch is acknowledged, so is the report.
        try:
            assert stream.exchange(fpb.PushRequest(batch=fpb.Batch(cursor=0))).WhichOneof("msg") == "ack"
            stream.close()
        except grpc.RpcError as err:  # a release that checks reports may refuse this one, ending the stream
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    config = fed.fed.configs[NATIONAL]
    out = shows("status", "-c", config)
    assert "the whole federation" in out
    code, doc = cli("status", "-c", config, "--json")
    assert code == 0 and raw_unsafe(doc) == []
    (row,) = [r for r in json.loads(doc)["federation"] if r["province"] == "44"]
    if row["backlog"] == NAME:  # this release shows what the report said (a later one may refuse it whole)
        assert NAME_SHOWN in out and "[link=http://x]z[/link]" in out


def test_a_hostile_quarantined_change_prints_escaped(fed: Fed) -> None:
    """Province 44 pushes a change whose record id and operator hold escapes, signed by a key the
    national hub was never shown: it is quarantined, and the quarantine lists it escaped."""
    rid = "\x1b]0;pwned\x07\x1b[2J[/][link=http://x]"
    change = _create("province-44", 3, rid, fed.ids["clean"], OPERATOR)  # type: ignore[attr-defined]
    accepted = _signed(fed.fed, "44", change)
    ack = push(fed, "province-44", NATIONAL, fpb.Batch(cursor=1, changes=[wire.signed_change(accepted.envelope)]))
    assert ack.quarantined == 1
    config = fed.fed.configs[NATIONAL]
    code, doc = cli("quarantine", "list", "-c", config, "--json")
    assert code == 0 and raw_unsafe(doc) == []
    (entry,) = [q for q in json.loads(doc) if q["record_id"] == rid]
    out = shows("quarantine", "list", "-c", config)
    assert "\\x1b]0;pwned\\x07\\x1b[2J[/][link=http://x]" in out
    out = shows("quarantine", "show", "-c", config, entry["id"])
    assert json.loads(out)["record_id"] == rid


def test_a_legacy_record_holding_now_forbidden_text_is_not_frozen(fed: Fed) -> None:
    legacy = fed.ids["legacy"]  # type: ignore[attr-defined]
    config = fed.fed.configs[N45]
    code, out = cli("person", "update", "-c", config, legacy, "--set", "residence_city=南宁市")
    assert code == 0, out
    record = fed.get(N45, legacy)
    assert record["residence_city"] == "南宁市" and record["contraception"] == NAME
    # Writing the forbidden text itself is refused, with the field and the rule.
    code, out = cli("person", "update", "-c", config, legacy, "--set", "contraception=a\x1b[2Jb")
    assert code == 1 and "contraception: must not contain control characters (Unicode Cc)" in out, out
    assert raw_unsafe(out) == []
    code, out = cli("person", "update", "-c", config, legacy, "--set", "contraception=a\u202eb")
    assert code == 1 and "contraception: must not contain format (bidi or zero-width) characters" in out, out


# -- CSV -----------------------------------------------------------------------------------------------


def test_csv_export_neutralises_formulas_and_import_restores_them(fed: Fed, tmp_path: Path) -> None:
    config = fed.fed.configs[N45]
    rng = random.Random("csv-injection")
    formulas = {"name": '=HYPERLINK("http://x","y")', "contraception": "@SUM(A1:A9)",
                "residence_city": "+86 cmd", "marriage_cert_no": "-2+3"}
    written = fed.write(N45, "create", {**person(rng, household="45", residence="45"), **formulas})
    out_dir = tmp_path / "exports"  # does not exist yet
    export = out_dir / "people.csv"
    code, out = cli("person", "export", "-c", config, export)
    assert code == 0, out
    assert mode(export) == 0o600 and mode(out_dir) == 0o700
    with open(export, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    (row,) = [r for r in rows if r["person_id"] == written["person_id"]]
    for field, value in formulas.items():
        assert row[field] == "'" + value, field
    assert not any(cell and cell[0] in "=+-@\t\r" for r in rows for cell in r.values())
    # Import the export (without person_id): the values come back exactly, so the node finds the person
    # it holds unchanged (a value restored wrongly would make the row "differing").
    reimport = tmp_path / "again.csv"
    with open(reimport, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "person_id"], extrasaction="ignore")
        writer.writeheader()
        writer.writerow(row)
    code, out = cli("person", "import", "-c", config, reimport)
    assert code == 0 and "0 new, 1 unchanged, 0 differing, 0 refused" in out, out
    again = [r for r in fed.list(N45).values() if r["id_number"] == written["id_number"]]
    assert [r["person_id"] for r in again] == [written["person_id"]]


def test_an_oversized_csv_field_is_refused_by_line_and_later_rows_load(fed: Fed, tmp_path: Path) -> None:
    config = fed.fed.configs[N45]
    rng = random.Random("oversized")
    people = [person(rng, household="45", residence="45") for _ in range(4)]
    fields = list(FIELDS)
    people = [{k: ("" if p.get(k) is None else p[k]) for k in fields} for p in people]
    path = tmp_path / "big.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerow([people[0][k] for k in fields])                                   # line 2
        writer.writerow([("x" * 200_000 if k == "name" else people[1][k]) for k in fields])  # line 3
        writer.writerow([people[2][k] for k in fields])                                   # line 4
        writer.writerow([("y" * 5_000 if k == "name" else people[3][k]) for k in fields])   # line 5
    code, out = cli("person", "import", "-c", config, path)
    assert code == 2, out
    assert f"{path}:3: line longer than 65536 characters; skipped" in out, out
    assert f"{path}:5: row: field larger than field limit (4096)" in out, out
    assert "2 new, 0 unchanged, 0 differing, 2 refused" in out
    ids = {r["id_number"] for r in fed.list(N45).values()}
    assert {people[0]["id_number"], people[2]["id_number"]} <= ids
    assert not {people[1]["id_number"], people[3]["id_number"]} & ids


# -- files and logs ----------------------------------------------------------------------------------


def test_stores_backups_and_their_directories_are_private_under_umask_022(fed: Fed, tmp_path: Path) -> None:
    for identity in (N45, NATIONAL, PEARL):
        db = Path(load_any(fed.fed.configs[identity]).database.removeprefix("sqlite:///"))
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(p.exists() for p in files), identity
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}, identity
        assert mode(db.parent) == 0o700, identity
    assert mode(fed.root / "logs") == 0o700 and mode(fed.fed.log_path(N45)) == 0o600
    backup = tmp_path / "backups" / "node45.db"
    code, out = cli("node", "backup", "-c", fed.fed.configs[N45], backup)
    assert code == 0, out
    assert mode(backup) == 0o600 and mode(backup.parent) == 0o700


def test_refused_writes_log_the_field_and_rule_never_the_data(fed: Fed) -> None:
    config = fed.fed.configs[N45]
    rng = random.Random("no-pii-in-logs")
    good = person(rng, household="45", residence="45")
    id_number, birth = str(good["id_number"]), str(good["birth_date"])
    wrong_birth = "1951-07-13" if birth != "1951-07-13" else "1952-07-13"
    attempts = [
        ({**good, "birth_date": wrong_birth}, "birth_date"),   # does not match the ID number
        ({**good, "name": "欧阳\x1b[2J娜娜"}, "name"),            # a control character
        ({**good, "sex": "欧阳娜娜"}, "sex"),                     # raw input that is a name
        ({**good, "moved_in_on": "2999-01-01"}, "moved_in_on"),  # in the future
    ]
    for fields, field in attempts:
        code, out = cli("person", "add", "-c", config, "--json", json.dumps(fields, ensure_ascii=False))
        assert code == 1 and f"invalid argument: {field}: " in out, out
        assert raw_unsafe(out) == []
    log = fed.fed.log_path(N45)

    def logged() -> str:
        text = log.read_text(encoding="utf-8", errors="replace")
        assert text.count("Write refused: ") >= len(attempts)
        return text

    text = eventually(logged, 10)
    for secret in (id_number, birth, wrong_birth, birth.replace("-", ""), str(good["name"]), "欧阳", "2999-01-01"):
        assert secret not in text, secret
    assert "Write refused: birth_date: does not match the birth date id_number encodes" in text
    assert "Write refused: name: must not contain control characters (Unicode Cc)" in text
    assert "Write refused: sex: must be one of M, F" in text
    assert "Write refused: moved_in_on: must not be in the future" in text
    assert raw_unsafe(text) == []
