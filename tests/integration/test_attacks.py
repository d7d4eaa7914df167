"""Attacks with real credentials against a running federation.

test_hostile.py covers a node pushing forged, foreign and unauthorised
changes of its own making. Here the attacker holds real keys and real
history: it replays what a node really sent, re-uses a sequence number the
node really used, puts another province's name on its own signature (as a
node, and as a regional hub forwarding it), alters a real change while
forwarding it as a hub, and throws malformed, truncated and oversized gRPC
messages at every endpoint. Each must be refused clearly (a quarantine entry
with its reason, or a non-OK status that is not INTERNAL), nothing refused may
reach a record, and the processes must keep serving.

One small federation for the module: provinces 11 (hub-bohai), 44 and 45
(hub-pearl), and hub-national.
"""

from __future__ import annotations

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
from core.apply import local_write
from core.change import Change, Envelope, parse
from core.hlc import Timestamp
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


def sealed(sign: Signer, *changes: Change) -> list[fpb.SignedChange]:
    bodies = [c.to_body() for c in changes]
    return [wire.signed_change(Envelope(b, s)) for b, s in zip(bodies, sign.seal_batch(bodies))]


def new_change(origin: str, seq: int, fields: dict[str, object], record_id: str | None = None) -> Change:
    values = validate_person(fields, today=date.today())
    return local_write(None, kind="person", record_id=record_id or str(uuid.uuid4()), values=values, node=origin,
                       seq=seq, at=Timestamp(now_ms(), 0, origin), op="create", operator=None)


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


def as_signed_change(row: dict[str, Any], body: bytes | None = None) -> fpb.SignedChange:
    proof = bytes(row["proof"])
    return fpb.SignedChange(body=bytes(row["body"]) if body is None else body, seal=fpb.Seal(
        key_id=row["key_id"], signature=bytes(row["signature"]), index=row["seal_index"], size=row["seal_size"],
        proof=[proof[i:i + 32] for i in range(0, len(proof), 32)]))


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
    real = parse(bytes(row["body"]))
    # Same origin, same seq, same record; other content, and properly signed by 44's real key.
    twin = local_write(None, kind="person", record_id=pid, values={**real.state.values(), "name": "冒名顶替"},
                       node="province-44", seq=real.seq, at=Timestamp(now_ms(), 0, "province-44"),
                       op="create", operator=None)
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
    assert row["reason"].startswith("malformed: province-44 may only push changes it authored"), row
    assert row["origin"] == "province-45" and row["peer"] == "province-44"

    # A regional hub may forward others' changes, so the claim gets as far as the signature check.
    _, quarantined = _hub_state(fed, NATIONAL)
    ack = push(fed, BOHAI, NATIONAL, fpb.Batch(cursor=0, certificates=[s44.cert_der], changes=sealed(s44, forged)))
    assert (ack.accepted, ack.quarantined) == (0, 1)
    (row,) = [q for q in fed.quarantine(NATIONAL) if q["record_id"] == forged.record_id]
    assert row["reason"] == ("unauthorised writer: origin claims province-45 but the change is signed by "
                             "province-44"), row
    assert row["peer"] == BOHAI
    assert fed.status(NATIONAL)["quarantined"] == quarantined + 1

    fed.quiet(timeout=60)
    for identity in ("province-11", "province-44", "province-45", NATIONAL):
        assert fed.get(identity, forged.record_id) is None, identity
    assert fed.history(PEARL, forged.record_id) == [] and fed.history(NATIONAL, forged.record_id) == []


# -- a hub altering what it forwards ------------------------------------------------------------


def test_hub_forwarding_an_altered_change_fails_the_signature(fed: Fed, history: dict) -> None:
    shared = history["province-11"][0]
    own = history["province-11-own"][0]
    (shared_row,) = logged(fed, "province-11", "record_id = ?", (shared["person_id"],))
    (own_row,) = logged(fed, "province-11", "record_id = ?", (own["person_id"],))
    assert not own_row["shared"]  # intra-province: it never left node 11, so national has not seen it
    assert fed.get(NATIONAL, own["person_id"]) is None

    body = bytes(shared_row["body"])
    old_name = json.dumps(shared["name"], ensure_ascii=False).encode()
    altered = body.replace(old_name, json.dumps("改名换姓", ensure_ascii=False).encode(), 1)
    assert altered != body and parse(altered).state.values()["name"] == "改名换姓"  # still a well-formed change
    _, quarantined = _hub_state(fed, NATIONAL)

    ack = push(fed, BOHAI, NATIONAL, fpb.Batch(cursor=0, changes=[
        as_signed_change(shared_row, altered),  # one field changed, the author's seal kept
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
