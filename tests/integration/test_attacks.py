"""Attacks with real credentials against a running federation.

test_hostile.py covers a node pushing forged, foreign and unauthorised
changes of its own making. Here the attacker holds real keys and real
history: it replays what a node really sent, re-uses a sequence number the
node really used, puts another province's name on its own signature (as a
node, and as a regional hub forwarding it), alters a real change while
forwarding it as a hub, and throws malformed, truncated and oversized gRPC
messages at every endpoint. It also runs issue 10's findings as a compromised
province would, with v2 deltas signed by its own real key: a hijack with forged
prior involvement, a record frozen by absurd numbers, forged authorship, and
equivocation (silent loss after a revoked key is test_trust's). Each must be
refused clearly (a quarantine entry with its reason, or a non-OK status that is
not INTERNAL), or parked or kept as the history says; nothing refused may reach
a record, and the processes must keep serving.

One small federation for the module: provinces 11 (hub-bohai), 44 and 45
(hub-pearl), and hub-national.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.signing import Signer
from runtime.config import load_any
from tests.support.launcher import Federation
from core import relay
from core.change import Envelope
from core.delta import Delta, delta_id, parse
from core.graph import RecordGraph
from core.hlc import MAX_LOGICAL, MAX_WALL_MS, Timestamp
from core.kinds import graph_rules
from core.person import validate_person
from runtime import wire
from runtime.replica import now_ms
from runtime.records import described
from runtime.transport import MAX_MESSAGE, channel_options, secure_channel
from tests.integration.conftest import Fed, RawPush, eventually, person, running
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import federation_pb2 as fpb

NATIONAL, BOHAI, PEARL = "hub-national", "hub-bohai", "hub-pearl"

# -- a small federation (shared with test_mixed_versions) ----------------------------------


def launch(root: Path, provinces: list[str]) -> Iterator[Fed]:
    """Start a federation of ``provinces`` and the hubs they need, upstream first, and wait
    until every link is up on its home hub. Always stopped afterwards."""
    fed = Fed(Federation.create(root, provinces))
    hubs = sorted(i for i in fed.fed.configs if i.startswith("hub-") and i != NATIONAL)
    nodes = sorted(i for i in fed.fed.configs if i.startswith("province-"))

    def start() -> None:
        for tier in ([NATIONAL], hubs, nodes):
            for identity in tier:
                fed.fed.start(identity, wait=False)
            for identity in tier:
                fed.fed.wait_healthy(identity, timeout=60)
        fed.wait_linked(timeout=90)

    with running(fed, start):
        yield fed


def address(fed: Fed, identity: str) -> str:
    return load_any(fed.fed.configs[identity]).listen


def creds_dir(fed: Fed, identity: str) -> Path:
    role, _, name = identity.partition("-")
    return fed.root / ("hubs" if role == "hub" else "nodes") / name


def peer_channel(fed: Fed, who: str, target: str, *, options: list | None = None) -> grpc.Channel:
    """A channel to ``target`` authenticated with ``who``'s own TLS certificate (a node or a hub)."""
    d = creds_dir(fed, who)
    if options is None:
        return secure_channel(address(fed, target), target, fed.root / "ca" / "ca.crt", d / "tls.crt", d / "tls.key")
    creds = grpc.ssl_channel_credentials(root_certificates=(fed.root / "ca" / "ca.crt").read_bytes(),
                                         private_key=(d / "tls.key").read_bytes(),
                                         certificate_chain=(d / "tls.crt").read_bytes())
    return grpc.secure_channel(address(fed, target), creds, options=options)


def operator_channel(fed: Fed, target: str, *, options: list | None = None) -> grpc.Channel:
    cfg = load_any(fed.fed.configs[target])
    assert cfg.operator is not None
    creds = grpc.ssl_channel_credentials(root_certificates=cfg.operator.ca.read_bytes(),
                                         private_key=cfg.operator.key.read_bytes(),
                                         certificate_chain=cfg.operator.cert.read_bytes())
    return grpc.secure_channel(address(fed, target), creds, options=options or channel_options())


def signer(fed: Fed, code: str) -> Signer:
    d = fed.root / "nodes" / code
    return Signer.load(d / "sign.key", d / "sign.crt")


def sealed(sign: Signer, *deltas: Delta) -> list[fpb.SignedChange]:
    """``deltas`` signed in one batch with ``sign`` (a province's real key), openings beside them."""
    bodies = [d.to_body() for d in deltas]
    return [wire.signed_change(Envelope(b, s, d.openings()))
            for b, s, d in zip(bodies, sign.seal_batch(bodies), deltas)]


def person_values(fields: dict[str, object]) -> dict[str, object]:
    values = validate_person(fields, today=date.today())
    return {**{k: v for k, v in values.items() if v is not None}, "_deleted": False}


def involved(values: dict[str, object]) -> frozenset[str]:
    return frozenset(str(values[f]) for f in ("household_province", "residence_province") if values.get(f))


def new_change(origin: str, seq: int, fields: dict[str, object], record_id: str | None = None) -> Delta:
    """A create, as ``origin`` would write it (routes: the provinces its values involve)."""
    values = person_values(fields)
    return Delta("person", record_id or str(uuid.uuid4()), origin, 0, seq, Timestamp(now_ms(), 0, origin), "create",
                 None, (), (), values, involved(values), {})


def forged_delta(origin: str, seq: int, record_id: str, values: dict[str, object], *, deps: tuple[str, ...],
                 routes: frozenset[str], at: Timestamp | None = None, op: str = "update") -> Delta:
    """A delta ``origin`` builds by hand, on ``deps``, with the routes it chooses."""
    return Delta("person", record_id, origin, 0, seq, at or Timestamp(now_ms(), 0, origin), op, None,
                 tuple(sorted(deps)), (), values, routes, {})


def held_graph(fed: Fed, identity: str, pid: str) -> RecordGraph:
    """The record's history as ``identity`` holds it (its log, read-only), as a graph: what a
    compromised node knows about a record and builds its forgeries on."""
    graph = RecordGraph("person", pid, graph_rules("person"))
    graph.restore((bytes(r["digest"]).hex(), parse(bytes(r["body"]), bytes(r["openings"] or b"{}"), complete=False))
                  for r in logged(fed, identity, "kind = 'person' AND record_id = ?", (pid,)))
    return graph


def shown(state: Any) -> dict:
    return json.loads(json.dumps(described(state), ensure_ascii=False, sort_keys=True))


def logged(fed: Fed, identity: str, where: str = "1", args: tuple = ()) -> list[dict[str, Any]]:
    """Rows of a running process's log table, read straight from its SQLite file (read-only)."""
    cfg = load_any(fed.fed.configs[identity])
    path = cfg.database.removeprefix("sqlite:///")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(f"SELECT * FROM log WHERE {where} ORDER BY lsn", args).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def as_signed_change(row: dict[str, Any], body: bytes | None = None, openings: bytes | None = None
                     ) -> fpb.SignedChange:
    """A logged delta as it went on the wire: body, seal, openings and the history it relayed."""
    proof = bytes(row["proof"])
    opened = bytes(row["openings"] or b"") if openings is None else openings
    return fpb.SignedChange(body=bytes(row["body"]) if body is None else body, seal=fpb.Seal(
        key_id=row["key_id"], signature=bytes(row["signature"]), index=row["seal_index"], size=row["seal_size"],
        proof=[proof[i:i + 32] for i in range(0, len(proof), 32)]), openings=b"" if opened == b"{}" else opened,
        relayed=[wire.signed_change(r) for r in relay.unpack(bytes(row["relay"]))] if row.get("relay") else [])


def push(fed: Fed, who: str, target: str, batch: fpb.Batch) -> fpb.Ack:
    """One batch pushed by ``who`` (its real TLS certificate) to ``target``; the hub's ack."""
    with peer_channel(fed, who, target) as channel:
        stream = RawPush(channel)
        hello = stream.exchange(fpb.PushRequest(hello=wire.hello(who)))
        assert hello.WhichOneof("msg") == "hello" and hello.hello.identity == target
        reply = stream.exchange(fpb.PushRequest(batch=batch))
        stream.close()
    assert reply.WhichOneof("msg") == "ack", reply
    assert reply.ack.cursor == batch.cursor
    return reply.ack


def cli_json(fed: Fed, identity: str, *args: str) -> Any:
    """Run the operator CLI against ``identity`` (``yipanqi ARGS -c CONFIG --json``) and parse its output."""
    out = subprocess.run([sys.executable, "-m", "cli.main", *args, "-c", str(fed.fed.configs[identity]), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- the federation, with some real history ---------------------------------------------------


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    yield from launch(tmp_path_factory.mktemp("attacks"), ["11", "44", "45"])


@pytest.fixture(scope="module")
def history(fed: Fed) -> dict[str, list[dict[str, Any]]]:
    """Records 44 shared with 45, one 11 shared with 44 and two 11 kept to itself; all delivered.

    Returns the written records by writer."""
    rng = random.Random("attacks")
    out: dict[str, list[dict[str, Any]]] = {"province-44": [], "province-11": [], "province-11-own": []}
    for _ in range(3):
        out["province-44"].append(fed.write("province-44", "create", person(rng, household="45", residence="44")))
    out["province-11"].append(fed.write("province-11", "create", person(rng, household="11", residence="44")))
    for _ in range(2):
        out["province-11-own"].append(fed.write("province-11", "create", person(rng, household="11", residence="11")))
    for rec in out["province-44"]:
        fed.arrives("province-45", rec["person_id"], rec, timeout=60)
        fed.arrives(NATIONAL, rec["person_id"], rec, timeout=60)
    fed.arrives("province-44", out["province-11"][0]["person_id"], out["province-11"][0], timeout=60)
    fed.quiet(timeout=60)
    return out


def _records(fed: Fed) -> dict[str, int]:
    return {i: fed.status(i)["records"] for i in ("province-11", "province-44", "province-45", NATIONAL)}


def _hub_state(fed: Fed, hub: str) -> tuple[int, int]:
    st = fed.status(hub)
    return st["log_lsn"], st["quarantined"]


# -- replay -------------------------------------------------------------------------------------


def test_replayed_changes_are_duplicates_and_change_nothing(fed: Fed, history: dict) -> None:
    rows = logged(fed, "province-44", "origin = ? AND shared", ("province-44",))
    assert len(rows) >= 3
    s44 = signer(fed, "44")
    ids = {r["record_id"] for r in rows}
    before = {rid: fed.history("province-45", rid) for rid in ids}
    lsn, quarantined = _hub_state(fed, PEARL)
    acked = fed.status("province-44")["acked_seq"]
    assert acked >= max(r["seq"] for r in rows)  # all of these were sent and acknowledged already

    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=acked, certificates=[s44.cert_der],
                                                    changes=[as_signed_change(r) for r in rows]))
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (0, len(rows), 0)

    # The same again, shuffled and each twice in one batch: still nothing new.
    doubled = [as_signed_change(r) for r in rows] * 2
    random.Random(1).shuffle(doubled)
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=acked, changes=doubled))
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (0, 2 * len(rows), 0)

    fed.quiet(timeout=60)
    assert _hub_state(fed, PEARL) == (lsn, quarantined)  # nothing appended to the hub's log
    assert {rid: fed.history("province-45", rid) for rid in ids} == before
    for rec in history["province-44"]:
        assert fed.get("province-45", rec["person_id"]) == rec


# -- equivocation --------------------------------------------------------------------------------


def _flagged(fed: Fed, identity: str, origin: str) -> dict[str, Any] | None:
    return (fed.status(identity).get("equivocating") or {}).get(origin)


def _converged(fed: Fed, pid: str, identities: tuple[str, ...], seq: int, bodies: int) -> dict[str, Any]:
    """Wait until every one of ``identities`` holds ``pid`` identically, with ``bodies`` changes of
    province-44 at ``seq`` in its history; the record as they hold it."""
    def same() -> dict[str, Any] | None:
        held = [fed.get(i, pid) for i in identities]
        counts = [len([h for h in fed.history(i, pid) if (h["origin"], h["seq"]) == ("province-44", seq)])
                  for i in identities]
        return held[0] if held[0] is not None and all(h == held[0] for h in held) and set(counts) == {bodies} \
            else None
    return eventually(same, 60, message=lambda: f"{pid}: {[(i, fed.get(i, pid)) for i in identities]}")


def test_reusing_a_real_sequence_number_is_equivocation_kept_and_flagged(fed: Fed, history: dict) -> None:
    original = history["province-44"][0]
    pid = original["person_id"]
    (row,) = logged(fed, "province-44", "record_id = ?", (pid,))
    real = parse(bytes(row["body"]), bytes(row["openings"]))
    # Same origin, same seq, same record; other content, and properly signed by 44's real key.
    twin = Delta("person", pid, "province-44", real.epoch, real.seq, Timestamp(now_ms(), 0, "province-44"), "create",
                 None, (), (), {**real.values, "name": "冒名顶替"}, real.routes, {})
    assert twin.to_body() != bytes(row["body"])
    status_before = cli_json(fed, PEARL, "status")
    assert "province-44" not in status_before["equivocating"]

    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=sealed(signer(fed, "44"), twin)))
    # Kept as a concurrent write, not quarantined: the hub cannot tell which of the two is honest.
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (1, 0, 0)
    status_after = cli_json(fed, PEARL, "status")
    assert status_after["quarantined"] == status_before["quarantined"]
    assert status_after["log_lsn"] == status_before["log_lsn"] + 1
    assert status_after["equivocating"]["province-44"]["seq"] == real.seq
    (evidence,) = [e for e in status_after["equivocations"] if (e["origin"], e["seq"]) == ("province-44", real.seq)]
    assert len(evidence["changes"]) == 2 and all(c["lsn"] for c in evidence["changes"])
    # A resend of either is a duplicate.
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=sealed(signer(fed, "44"), twin)))
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (0, 1, 0)

    # Forwarded like any change: 45 and national merge both, identically (the name is a conflict), and flag 44.
    merged = _converged(fed, pid, ("province-45", NATIONAL), real.seq, 2)
    assert {v["value"] for v in merged["_meta"]["conflicts"]["name"]} == {original["name"], "冒名顶替"}
    for identity in ("province-45", NATIONAL):
        assert (_flagged(fed, identity, "province-44") or {}).get("seq") == real.seq, identity
        assert fed.status(identity)["quarantined"] == 0, identity
    assert all(not q["reason"].startswith("equivocation") for q in fed.quarantine(PEARL))


def test_two_changes_under_one_seq_pushed_at_once_to_two_hubs_converge_everywhere(fed: Fed, history: dict) -> None:
    """Issue 10, finding 4: one forged (origin, seq), two bodies, one pushed to hub-pearl and one to the
    national hub at the same moment. Every replica of the record ends identical, with both
    versions; every process that saw both flags the origin, and the national hub keeps the pair."""
    rng = random.Random("equivocation")
    s44 = signer(fed, "44")
    seq = fed.status("province-44")["last_seq"] + 1000  # one 44 has not used: both bodies are forged
    fields = person(rng, household="44", residence="45")
    pid = str(uuid.uuid4())
    one = new_change("province-44", seq, fields, record_id=pid)
    other = new_change("province-44", seq, {**fields, "name": "另一个人"}, record_id=pid)
    assert one.to_body() != other.to_body()
    acks: dict[str, fpb.Ack] = {}
    threads = [threading.Thread(target=lambda h=hub, c=change: acks.__setitem__(
        h, push(fed, "province-44", h, fpb.Batch(cursor=0, certificates=[s44.cert_der], changes=sealed(s44, c)))))
        for hub, change in ((PEARL, one), (NATIONAL, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert {h: (a.accepted, a.quarantined) for h, a in acks.items()} == {PEARL: (1, 0), NATIONAL: (1, 0)}

    merged = _converged(fed, pid, ("province-45", NATIONAL), seq, 2)
    assert {v["value"] for v in merged["_meta"]["conflicts"]["name"]} == {fields["name"], "另一个人"}
    for identity in (PEARL, NATIONAL, "province-45"):
        eventually(lambda i=identity: _flagged(fed, i, "province-44"), 30,
                   message=lambda i=identity: f"{i} does not flag province-44: {fed.status(i).get('equivocating')}")
    # The evidence reached the national hub: both signed bodies, in its log under their digests.
    (pair,) = [e for e in fed.status(NATIONAL)["equivocations"] if (e["origin"], e["seq"]) == ("province-44", seq)]
    rows = logged(fed, NATIONAL, "origin = ? AND seq = ?", ("province-44", seq))
    assert {bytes(r["body"]) for r in rows} == {one.to_body(), other.to_body()}
    assert {c["lsn"] for c in pair["changes"]} == {r["lsn"] for r in rows}
    for identity in (PEARL, NATIONAL, "province-45"):
        assert all(not q["reason"].startswith("equivocation") for q in fed.quarantine(identity)), identity
    # Logs name no person: neither name written appears in any process's log.
    for identity in (PEARL, NATIONAL, "province-45"):
        text = fed.fed.log_path(identity).read_text(errors="replace")
        assert fields["name"] not in text and "另一个人" not in text, identity


# -- forged origin -----------------------------------------------------------------------------


def test_forged_origin_refused_from_a_node_and_unauthorised_via_a_hub(fed: Fed) -> None:
    rng = random.Random("forged-origin")
    s44 = signer(fed, "44")
    # Claims to be written by 45 (a record involving both), signed with 44's real key.
    forged = new_change("province-45", 10**6, person(rng, household="45", residence="44"))

    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der],
                                                    changes=sealed(s44, forged)))
    assert (ack.accepted, ack.quarantined) == (0, 1)
    (row,) = [q for q in fed.quarantine(PEARL) if q["record_id"] == forged.record_id]
    assert row["reason"].startswith("malformed: province-44 may only push deltas it authored"), row
    assert row["origin"] == "province-45" and row["peer"] == "province-44"

    # A regional hub may forward others' changes, so the claim gets as far as the signature check.
    _, quarantined = _hub_state(fed, NATIONAL)
    ack = push(fed, BOHAI, NATIONAL, fpb.Batch(cursor=0, certificates=[s44.cert_der], changes=sealed(s44, forged)))
    assert (ack.accepted, ack.quarantined) == (0, 1)
    (row,) = [q for q in fed.quarantine(NATIONAL) if q["record_id"] == forged.record_id]
    assert row["reason"] == ("unauthorised writer: origin claims province-45 but the delta is signed by "
                             "province-44"), row
    assert row["peer"] == BOHAI
    assert fed.status(NATIONAL)["quarantined"] == quarantined + 1

    fed.quiet(timeout=60)
    for identity in ("province-11", "province-44", "province-45", NATIONAL):
        assert fed.get(identity, forged.record_id) is None, identity
    assert fed.history(PEARL, forged.record_id) == [] and fed.history(NATIONAL, forged.record_id) == []


# -- issue 10's findings, as a compromised province (44, with its own real keys) would try them --


def _heads(fed: Fed, identity: str, pid: str) -> tuple[str, ...]:
    return held_graph(fed, identity, pid).heads()


def _refused_at(fed: Fed, identity: str, pid: str, start: str) -> list[dict[str, Any]]:
    return [q for q in fed.quarantine(identity) if q["record_id"] == pid and q["reason"].startswith(start)]


def _claims(fed: Fed, identity: str, pid: str) -> list[dict[str, Any]]:
    rows = json.loads(fed.admin(identity).Claims(apb.ClaimsRequest(all=True), timeout=10).json)
    return [c for c in rows if c["person_id"] == pid]


def test_hijack_with_forged_prior_involvement_is_refused_as_unauthorised_and_changes_nothing(fed: Fed) -> None:
    """Issue 10, finding 1. 44 takes a record of 11 and 45 (household 11, residence 45) that it is
    not involved in: an update moving the residence to 44 and renaming, built on the record's real
    heads and signed with 44's real key; then the same with forged prior involvement (a create of
    its own for the record's key, which is only a claim, as a dependency), and a v1-style body
    that states its prior involvement. The history at each delta's dependencies decides: refused
    as unauthorised, charged to 44, and nothing changes at 11, 45 or the national hub; 11's next
    ordinary edit still does not reach 44."""
    rng = random.Random("hijack")
    s44 = signer(fed, "44")
    victim = fed.write("province-11", "create", person(rng, household="11", residence="45"))
    pid = victim["person_id"]
    for identity in ("province-45", NATIONAL):
        fed.arrives(identity, pid, victim, timeout=60)
    fed.quiet(timeout=60)
    heads = _heads(fed, "province-11", pid)  # what an attacker who learned the record's key and heads knows
    seq = fed.status("province-44")["last_seq"] + 10_000
    takeover = {"residence_province": "44", "name": "劫持者"}

    hijack = forged_delta("province-44", seq, pid, takeover, deps=heads, routes=frozenset({"11", "44", "45"}))
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der],
                                                    changes=sealed(s44, hijack)))
    assert ack.quarantined == 0  # a regional hub cannot judge the history; it routes by the signed head
    not_involved = "unauthorised writer: province-44 is not involved in the record at its dependencies"
    for identity in ("province-45", NATIONAL):
        (row,) = eventually(lambda i=identity: _refused_at(fed, i, pid, not_involved), 60,
                            message=lambda i=identity: f"{i}: {fed.quarantine(i)[:3]}")
        assert row["charged"] == "province-44" and row["origin"] == "province-44", row
        assert "劫持者" not in json.dumps(row, ensure_ascii=False), row  # no personal data in the reason

    # Forged prior involvement: 44 registers the person itself (a create that names 44 as household,
    # while 11 founded the record from the ID's own province), then updates on top of that and the heads.
    same_person = {k: victim[k] for k in ("id_number", "birth_date", "sex")}
    claim = new_change("province-44", seq + 1, {**person(rng, household="44", residence="11"), **same_person},
                       record_id=pid)
    claim_id = delta_id(claim.to_body())
    on_claim = forged_delta("province-44", seq + 2, pid, takeover, deps=(*heads, claim_id),
                            routes=frozenset({"11", "44", "45"}))
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=sealed(s44, claim, on_claim)))
    assert ack.quarantined == 0
    # The create is a claim, held apart at the national hub and at the household province (11) ...
    for identity in (NATIONAL, "province-11"):
        (c,) = eventually(lambda i=identity: _claims(fed, i, pid), 60, message=lambda i=identity: f"{i}: no claim")
        assert (c["claimer"], c["status"]) == ("province-44", "open"), c
    # ... so the update on top of it is still by a province not involved.
    eventually(lambda: len(_refused_at(fed, NATIONAL, pid, not_involved)) == 2, 60,
               message=lambda: f"national: {fed.quarantine(NATIONAL)[:3]}")

    # A body that states prior involvement (v1's "prior") is not even a delta.
    body = hijack.to_body()
    stated = body[:-1] + b',"prior":["11","44","45"]}'
    (seal,) = s44.seal_batch([stated])
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=[
        wire.signed_change(Envelope(stated, seal, hijack.openings()))]))
    assert (ack.accepted, ack.quarantined) == (0, 1)
    (row,) = fed.quarantine(PEARL)[:1]  # newest first; refused before its record could be read
    assert row["reason"].startswith("malformed: prior: not a field of a v2 delta"), row
    assert row["charged"] == "province-44", row

    fed.quiet(timeout=60)
    for identity in ("province-11", "province-45", NATIONAL):
        assert fed.get(identity, pid) == victim, identity
        # No update of 44's was held anywhere; the claim's create is kept (apart) where it was routed.
        theirs = [(h["origin"], h["seq"], h["op"]) for h in fed.history(identity, pid) if h["origin"] != "province-11"]
        assert theirs in ([], [("province-44", seq + 1, "create")]), (identity, theirs)
    assert ("province-44", seq + 1, "create") in [(h["origin"], h["seq"], h["op"]) for h in fed.history(NATIONAL, pid)]
    assert fed.get("province-44", pid) is None
    # 11's next ordinary edit goes where the history says (45 and national), never to 44.
    edited = fed.write("province-11", "update", {"children": (victim.get("children") or 0) + 1}, record_id=pid)
    for identity in ("province-45", NATIONAL):
        fed.arrives(identity, pid, edited, timeout=60)
    fed.quiet(timeout=60)
    assert fed.get("province-44", pid) is None


def test_frozen_record_absurd_time_huge_seq_and_deep_deps_crash_nothing_and_the_record_stays_writable(
        fed: Fed) -> None:
    """Issue 10, finding 2: a clock entry of 10**4300 froze a record. A delta carries no clock
    (clocks are derived from the dependency graph), so 44, involved in the record, sends what it
    can express instead: the latest HLC time there is, the greatest sequence number, a dependency
    list of 64 hashes that do not exist, a chain of 100 deltas on each other, and numbers past
    what the envelope allows. Nothing crashes; what is ahead of the clock or waits for history is
    parked (shown in status), what is out of range is refused with the key, and the record stays
    writable, updates and delete, at 11 and at the national hub."""
    rng = random.Random("frozen")
    s44 = signer(fed, "44")
    rec = fed.write("province-11", "create", person(rng, household="11", residence="44"))
    pid = rec["person_id"]
    for identity in ("province-44", NATIONAL):
        fed.arrives(identity, pid, rec, timeout=60)
    fed.quiet(timeout=60)
    heads = _heads(fed, "province-44", pid)
    routes = frozenset({"11", "44"})
    far = Timestamp(MAX_WALL_MS - 1, MAX_LOGICAL - 1, "province-44")
    future = forged_delta("province-44", 2**62, pid, {"name": "未来人"}, deps=heads, routes=routes, at=far)
    nowhere = tuple(hashlib.sha256(b"no such delta %d" % i).hexdigest() for i in range(64))
    orphan = forged_delta("province-44", 2**62 + 1, pid, {"name": "无根"}, deps=nowhere, routes=routes)
    chain: list[Delta] = []
    deps = heads
    t0 = now_ms()
    for i in range(100):
        d = forged_delta("province-44", 2**63 - 101 + i, pid, {"children": i % 10}, deps=deps, routes=routes,
                         at=Timestamp(t0 + i, 0, "province-44"))
        chain.append(d)
        deps = (delta_id(d.to_body()),)
    assert chain[-1].seq == 2**63 - 2
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der],
                                                    changes=sealed(s44, future, orphan, *chain)))
    assert (ack.accepted, ack.quarantined) == (2 + len(chain), 0), ack

    # Numbers past what a delta may say are refused at the door, naming the key.
    last = chain[-1]
    over_seq = last.to_body().replace(b'"seq":%d' % last.seq, b'"seq":%d' % 2**63)
    huge_at = last.to_body().replace(b'"at":[%d,0,' % last.at.wall_ms, b'"at":[1' + b"0" * 4300 + b',0,')  # 10**4300
    assert over_seq != last.to_body() and huge_at != last.to_body()
    bodies = [over_seq, huge_at]
    seals = s44.seal_batch(bodies)
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=[
        wire.signed_change(Envelope(b, s, last.openings())) for b, s in zip(bodies, seals)]))
    assert (ack.accepted, ack.quarantined) == (0, 2), ack
    reasons = sorted(q["reason"] for q in fed.quarantine(PEARL)[:2])
    assert reasons[0].startswith("malformed: body: unacceptable JSON value (Exceeds the limit"), reasons
    assert reasons[1].startswith("malformed: seq: must be an integer in 1..2**63-1"), reasons

    # The national hub holds the chain, parks the rest, and says what each parked delta waits for.
    def parked() -> dict[str, Any] | None:
        waiting = {w["delta"]: w for w in (fed.status(NATIONAL).get("parked") or {}).get("waiting", [])}
        return waiting if {delta_id(future.to_body()), delta_id(orphan.to_body())} <= set(waiting) else None
    waiting = eventually(parked, 120, message=lambda: f"national parked: {fed.status(NATIONAL).get('parked')}")
    assert waiting[delta_id(future.to_body())]["waiting_for"] == ["time"]
    assert sorted(waiting[delta_id(orphan.to_body())]["waiting_for"]) == sorted(nowhere)
    tail = delta_id(chain[-1].to_body())
    eventually(lambda: any(h["seq"] == chain[-1].seq for h in fed.history("province-11", pid)), 120,
               message=lambda: f"11 never held 44's chain: {fed.history('province-11', pid)[-2:]}")
    assert tail in _heads(fed, "province-11", pid)

    # The record stays writable at 11: an update on top of all that, then a delete, reach the national hub.
    for identity in ("province-11", NATIONAL):
        assert fed.get(identity, pid)["name"] == rec["name"], identity  # the parked names never applied
    edited = fed.write("province-11", "update", {"name": "照常"}, record_id=pid)
    assert edited["name"] == "照常" and edited["children"] == 9
    fed.arrives(NATIONAL, pid, edited, timeout=60)
    fed.write("province-11", "delete", {}, record_id=pid)
    eventually(lambda: (fed.get(NATIONAL, pid) or {}).get("_meta", {}).get("deleted") is True, 60,
               message=lambda: f"national: {fed.get(NATIONAL, pid)}")
    for identity in fed.fed.configs:
        with fed.fed.channel(identity) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, identity


def test_forged_authorship_a_delta_carries_only_its_signers_versions(fed: Fed) -> None:
    """Issue 10, finding 3: a v1 change carried every writer's versions under its last author's
    signature, so 44 could show its value as written by ``province-11-FAKE-WRITER``. A delta
    holds only its signer's own values. 44, involved in a record of 45's, tries every way to put
    a version under another name: a delta naming 45 as its origin (pushed itself, and relayed
    inside one of its own), a body carrying other writers' versions, a made-up writer, and an
    opening for a field the delta does not write. Each is refused with its reason; the record,
    its history and its clock name only the provinces that really signed."""
    rng = random.Random("authorship")
    s44 = signer(fed, "44")
    rec = fed.write("province-45", "create", person(rng, household="45", residence="44"))
    pid = rec["person_id"]
    for identity in ("province-44", NATIONAL):
        fed.arrives(identity, pid, rec, timeout=60)
    fed.quiet(timeout=60)
    heads = _heads(fed, "province-44", pid)
    seq = fed.status("province-44")["last_seq"] + 20_000
    routes = frozenset({"44", "45"})
    as_45 = forged_delta("province-45", seq, pid, {"name": "冒名"}, deps=heads, routes=routes)

    # 1. Pushed by 44 itself: a province pushes only what it authored.
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der],
                                                    changes=sealed(s44, as_45)))
    assert (ack.accepted, ack.quarantined) == (0, 1)
    assert _refused_at(fed, PEARL, pid, "malformed: province-44 may only push deltas it authored; this one claims "
                                        "origin province-45")
    # 2. Relayed inside a genuine delta of 44's (anyone's deltas may be relayed): the signer must be the origin.
    own = forged_delta("province-44", seq + 1, pid, {"children": 4}, deps=heads, routes=routes)
    (carrier,) = sealed(s44, own)
    carrier.relayed.extend(sealed(s44, as_45))
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=[carrier]))
    assert (ack.accepted, ack.quarantined) == (1, 1), ack
    assert _refused_at(fed, PEARL, pid, "unauthorised writer: origin claims province-45 but the delta is signed by "
                                        "province-44")
    # 3. Versions of other writers in the body, as v1 carried them; a made-up writer; an opening of a field
    #    the delta does not write.
    body = forged_delta("province-44", seq + 2, pid, {"name": "冒名"}, deps=heads, routes=routes).to_body()
    v1_state = body[:-1] + (',"state":{"fields":{"name":[{"at":[%d,0,"province-11-FAKE-WRITER"],"value":"冒名"}]}}}'
                            % now_ms()).encode()
    fake = forged_delta("province-44", seq + 3, pid, {"name": "冒名"}, deps=heads, routes=routes)
    fake_body = fake.to_body().replace(b'"origin":"province-44"', b'"origin":"province-11-FAKE-WRITER"')
    plain = forged_delta("province-44", seq + 4, pid, {"children": 5}, deps=heads, routes=routes)
    extra = json.dumps({**json.loads(plain.openings()), "name": ["00" * 16, "冒名"]}, ensure_ascii=False,
                       sort_keys=True, separators=(",", ":")).encode()
    bodies = [v1_state, fake_body, plain.to_body()]
    seals = s44.seal_batch(bodies)
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=[
        wire.signed_change(Envelope(b, s, o)) for b, s, o in zip(bodies, seals, [fake.openings(), fake.openings(),
                                                                                extra])]))
    assert (ack.accepted, ack.quarantined) == (0, 3), ack
    reasons = [q["reason"] for q in fed.quarantine(PEARL)[:3]]
    assert any(r.startswith("malformed: state: not a field of a v2 delta") for r in reasons), reasons
    assert any(r.startswith("malformed: origin: ") for r in reasons), reasons
    assert any(r.startswith("malformed: openings.name: opens a field the delta does not write") for r in reasons), \
        reasons

    # Only 44's own delta (children = 4) went through, under 44's name; nobody's name was put on anything.
    expected = {**rec, "children": 4, "_meta": {**rec["_meta"], "clock": {"province-45": 1, "province-44": 1}}}
    for identity in ("province-45", NATIONAL):
        got = fed.arrives(identity, pid, expected, timeout=60)
        assert "冒名" not in json.dumps(got, ensure_ascii=False) and "FAKE" not in json.dumps(got), identity
        assert [(h["origin"], h["op"]) for h in fed.history(identity, pid)] == [("province-45", "create"),
                                                                                 ("province-44", "update")], identity


# -- a hub altering what it forwards ------------------------------------------------------------


def test_hub_forwarding_an_altered_change_fails_the_signature(fed: Fed, history: dict) -> None:
    shared = history["province-11"][0]
    own = history["province-11-own"][0]
    (shared_row,) = logged(fed, "province-11", "record_id = ?", (shared["person_id"],))
    (own_row,) = logged(fed, "province-11", "record_id = ?", (own["person_id"],))
    assert not own_row["shared"]  # intra-province: it never left node 11, so national has not seen it
    assert fed.get(NATIONAL, own["person_id"]) is None

    body = bytes(shared_row["body"])
    real = parse(body, bytes(shared_row["openings"]))
    # The hub changes the name: a new commitment in the body and its opening beside it, the author's seal kept.
    forged = Delta(real.kind, real.record_id, real.origin, real.epoch, real.seq, real.at, real.op, real.operator,
                   real.deps, real.accepts, {**real.values, "name": "改名换姓"}, real.routes, real.chain,
                   salts=real.salts)
    altered, openings = forged.to_body(), forged.openings()
    assert altered != body and parse(altered, openings).values["name"] == "改名换姓"  # still a well-formed delta
    _, quarantined = _hub_state(fed, NATIONAL)

    ack = push(fed, BOHAI, NATIONAL, fpb.Batch(cursor=0, changes=[
        as_signed_change(shared_row, altered, openings),  # one field changed, the author's seal kept
        as_signed_change(own_row),              # untouched
    ]))
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (1, 0, 1)

    (row,) = [q for q in fed.quarantine(NATIONAL) if q["record_id"] == shared["person_id"]]
    assert row["reason"].startswith("bad signature"), row
    assert (row["origin"], row["seq"], row["peer"]) == ("province-11", shared_row["seq"], BOHAI)
    assert fed.status(NATIONAL)["quarantined"] == quarantined + 1
    # The untouched change is in; the altered one changed nothing anywhere.
    fed.arrives(NATIONAL, own["person_id"], own, timeout=60)
    fed.quiet(timeout=60)
    for identity in ("province-44", NATIONAL, "province-11"):
        assert fed.get(identity, shared["person_id"]) == shared, identity


# -- malformed, truncated and oversized messages --------------------------------------------------

FED = "/yipanqi.v2.Federation/"
ADM = "/yipanqi.v2.Admin/"
GARBAGE = b"\x0f\xff\xff\xff"  # field 1 with wire type 7: not protobuf at all
BIG_GARBAGE = b"\x0f" + bytes(5 * 1024 * 1024)  # 5 MiB, undecodable from the first byte
TOO_BIG = MAX_MESSAGE + 1024


def _raw(channel: grpc.Channel, method: str, shape: str, payloads: list[bytes], timeout: float = 60) -> grpc.StatusCode:
    """Send raw request bytes; the call's final status code."""
    ident = lambda b: b  # noqa: E731
    try:
        if shape == "unary":
            channel.unary_unary(method, request_serializer=ident, response_deserializer=ident)(
                payloads[0], timeout=timeout)
        elif shape == "server-stream":
            list(channel.unary_stream(method, request_serializer=ident, response_deserializer=ident)(
                payloads[0], timeout=timeout))
        else:
            list(channel.stream_stream(method, request_serializer=ident, response_deserializer=ident)(
                iter(payloads), timeout=timeout))
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _truncated(msg: Any) -> bytes:
    """``msg`` serialised and cut short, so that it really does not decode (some cuts of a
    message land on a field boundary and are just a shorter valid message)."""
    data = msg.SerializeToString()
    for end in range(len(data) // 2, len(data)):
        try:
            type(msg).FromString(data[:end])
        except DecodeError:
            return data[:end]
    raise AssertionError(f"no cut of {msg!r} fails to decode")


def _person_json(rng: random.Random, **extra: object) -> str:
    return json.dumps({**person(rng, household="45", residence="44"), **extra}, ensure_ascii=False)


def test_malformed_messages_get_clear_statuses_and_nothing_is_written(fed: Fed, history: dict) -> None:
    rng = random.Random("malformed")
    for payload, cls in ((GARBAGE, fpb.PushRequest), (GARBAGE, apb.Empty), (BIG_GARBAGE, apb.WriteRequest)):
        with pytest.raises(DecodeError):
            cls.FromString(payload)
    counts = _records(fed)
    pearl = _hub_state(fed, PEARL)
    s44 = signer(fed, "44")
    real_row = logged(fed, "province-44", "origin = ? AND shared", ("province-44",))[0]

    write = apb.WriteRequest(kind="person", op="create", fields_json=_person_json(rng))
    ref = apb.RecordRef(kind="person", record_id=history["province-44"][0]["person_id"])
    push_hello = fpb.PushRequest(hello=wire.hello("province-44"))
    sub = fpb.PullRequest(subscribe=fpb.Subscribe(cursor=123456789, max_batch=10, window=2))
    chunk = apb.ImportChunk(rows=[write, write])
    IA, RE, PD = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                  grpc.StatusCode.PERMISSION_DENIED)

    # (target, method, shape, payloads, expected); Federation as node 44, Admin as 44's operator.
    cases: list[tuple[str, str, str, list[bytes], grpc.StatusCode]] = []
    for name, shape, valid in (("Push", "bidi", push_hello), ("Pull", "bidi", sub)):
        cases += [
            (PEARL, FED + name, shape, [GARBAGE], IA),
            (PEARL, FED + name, shape, [_truncated(valid)], IA),
            (PEARL, FED + name, shape, [BIG_GARBAGE], IA),
            (PEARL, FED + name, shape, [valid.SerializeToString(), GARBAGE], IA),  # fine, then garbage
        ]
    cases.append((PEARL, FED + "Pull", "bidi", [fpb.PullRequest(ack=fpb.Ack(cursor=5)).SerializeToString()], IA))
    admin = [("Write", "unary", write), ("Get", "unary", ref), ("List", "server-stream", apb.ListRequest(kind="person")),
             ("History", "unary", ref), ("Status", "unary", apb.Empty()), ("Quarantine", "unary", apb.Empty()),
             ("Import", "bidi", chunk), ("Stats", "unary", apb.StatsRequest(by="month"))]
    for name, shape, valid in admin:
        cases += [("province-44", ADM + name, shape, [GARBAGE], IA),
                  ("province-44", ADM + name, shape, [BIG_GARBAGE], IA)]
        if valid.ByteSize():
            cases.append(("province-44", ADM + name, shape, [_truncated(valid)], IA))
    # Well-formed protobuf, unacceptable content.
    for bad in (dict(op="explode", fields_json=_person_json(rng)),
                dict(op="create", fields_json="[1,2]"),
                dict(op="create", fields_json='{"name": '),
                dict(op="create", fields_json=json.dumps("x" * 1_000_000)),
                dict(op="create", fields_json=_person_json(rng, name="名" * 1_000_000)),
                dict(op="create", fields_json=_person_json(rng, children=10**30)),
                dict(op="create", fields_json='{"children": ' + "9" * 5000 + "}"),  # over Python's int-digit limit
                dict(op="create", fields_json="[" * 100_000 + "]" * 100_000),  # nested past the recursion limit
                dict(op="create", kind="spaceship", fields_json=_person_json(rng)),
                dict(op="update", record_id="../../etc/passwd", fields_json='{"children": 1}')):
        cases.append(("province-44", ADM + "Write", "unary", [apb.WriteRequest(**bad).SerializeToString()], IA))
    # Errors that quote a huge input back must still arrive as their own status.
    cases += [("province-44", ADM + "Stats", "unary", [apb.StatsRequest(by="x" * 100_000).SerializeToString()], IA),
              ("province-44", ADM + "Write", "unary",
               [apb.WriteRequest(op="x" * 100_000, fields_json="{}").SerializeToString()], IA),
              ("province-44", ADM + "Get", "unary",
               [apb.RecordRef(kind="person", record_id="y" * 100_000).SerializeToString()], grpc.StatusCode.NOT_FOUND)]
    cases.append((PEARL, ADM + "Write", "unary", [write.SerializeToString()], PD))  # hubs write nothing

    problems = []
    channels: dict[str, grpc.Channel] = {
        PEARL: peer_channel(fed, "province-44", PEARL),
        "province-44": operator_channel(fed, "province-44"),
    }
    admin_at_pearl = operator_channel(fed, PEARL)
    try:
        for target, method, shape, payloads, expected in cases:
            channel = admin_at_pearl if (target == PEARL and method.startswith(ADM)) else channels[target]
            started = time.monotonic()
            code = _raw(channel, method, shape, payloads)
            if code != expected:
                problems.append(f"{method} {shape} {[p[:40] for p in payloads]}: {code} (expected {expected}, "
                                f"{time.monotonic() - started:.1f}s)")
    finally:
        for channel in (*channels.values(), admin_at_pearl):
            channel.close()

    # Over the 64 MiB limit (from a client that does not enforce it itself).
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    huge = b"\x0f" + bytes(TOO_BIG)
    with peer_channel(fed, "province-44", PEARL, options=unlimited) as channel:
        code = _raw(channel, FED + "Push", "bidi", [huge], timeout=120)
        if code != RE:
            problems.append(f"Push of {len(huge)} bytes: {code}")
    with operator_channel(fed, "province-44", options=unlimited) as channel:
        code = _raw(channel, ADM + "Write", "unary", [huge], timeout=120)
        if code != RE:
            problems.append(f"Write of {len(huge)} bytes: {code}")
    del huge

    # A Push whose first message is a batch of absurd seals: refused whole (one entry), the stream goes on.
    body = bytes(real_row["body"])
    good = as_signed_change(real_row)
    absurd = [
        fpb.SignedChange(body=body, seal=fpb.Seal(key_id=good.seal.key_id, signature=good.seal.signature,
                                                  index=7, size=7, proof=good.seal.proof)),
        fpb.SignedChange(body=body, seal=fpb.Seal(key_id=good.seal.key_id, signature=good.seal.signature,
                                                  index=0, size=2**32 - 1, proof=[bytes(32)] * 10_000)),
        fpb.SignedChange(body=body, seal=fpb.Seal(key_id="k" * (1 << 20), signature=good.seal.signature,
                                                  index=0, size=1, proof=[])),
        fpb.SignedChange(body=b"\xff" * 100, seal=good.seal),
        fpb.SignedChange(body=body),  # no seal at all
    ]
    with peer_channel(fed, "province-44", PEARL) as channel:
        stream = RawPush(channel)
        reply = stream.exchange(fpb.PushRequest(batch=fpb.Batch(cursor=0, certificates=[s44.cert_der, b"junk"],
                                                                changes=absurd)))
        assert reply.WhichOneof("msg") == "ack"
        assert (reply.ack.accepted, reply.ack.duplicates, reply.ack.quarantined) == (0, 0, len(absurd))
        # ... and the same stream still answers, with a real (duplicate) change.
        reply = stream.exchange(fpb.PushRequest(batch=fpb.Batch(cursor=0, changes=[good])))
        assert (reply.ack.accepted, reply.ack.duplicates, reply.ack.quarantined) == (0, 1, 0)
        stream.close()
    (entry,) = fed.quarantine(PEARL)[:1]
    assert entry["reason"].startswith(f"malformed: batch of {len(absurd)} changes refused whole: a change's seal "
                                      "or body does not decode (seal."), entry
    assert entry["charged"] == "province-44", entry

    assert not problems, "\n".join(problems)

    # Every process still serves, nothing was written, and a normal write still syncs.
    for identity in fed.fed.configs:
        with fed.fed.channel(identity) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, identity
    assert _records(fed) == counts
    lsn, quarantined = _hub_state(fed, PEARL)
    assert (lsn, quarantined) == (pearl[0], pearl[1] + 1)
    normal = fed.write("province-44", "create", person(rng, household="45", residence="44"))
    fed.arrives("province-45", normal["person_id"], normal, timeout=60)
    fed.arrives(NATIONAL, normal["person_id"], normal, timeout=60)
    assert _records(fed) == {**counts, "province-44": counts["province-44"] + 1,
                             "province-45": counts["province-45"] + 1, NATIONAL: counts[NATIONAL] + 1}
