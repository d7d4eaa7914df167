"""A federation upgraded one province at a time: a newer v2 release beside this one.

A newer release may raise the delta protocol version, add top-level keys to the signed delta
body and add record fields. This release must accept its signed deltas, keep the exact signed
bytes (a delta is known by their hash), show and pass on the fields it does not know, and keep
them when its own operators edit other fields of the record. The newer peer is simulated
faithfully: real node-44 credentials, a delta built the way a node builds one (core.graph, random
salts, the values as openings beside their commitments) and extended the way a newer release
would, signed with 44's real signing key and pushed over 44's real TLS certificate.

(The simulated newer 44 is not the running node 44, which never holds the delta: a hub sends no
province its own deltas back. So what reaches 44 afterwards is not asserted here.)

Provinces 44 and 45 (hub-pearl) and hub-national.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import pytest

from core import canonical
from core.change import Envelope
from core.delta import PROTOCOL, Delta, delta_id, parse
from core.graph import RecordGraph
from core.graphstate import state_of
from core.hlc import Timestamp
from core.kinds import graph_rules
from core.person import validate_person
from runtime import wire
from runtime.replica import now_ms
from tests.integration.conftest import Fed, eventually, person
from tests.integration.test_attacks import (NATIONAL, PEARL, RawPush, launch, logged, peer_channel, push, shown,
                                            signer)
from yipanqi.v2 import federation_pb2 as fpb

NEW_FIELD = "health_card_no"
NEWER = PROTOCOL + 1
FEATURE = {"consent": {"scope": ["health"], "given_on": "2025-01-01"}, "level": 3}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    yield from launch(tmp_path_factory.mktemp("mixed"), ["44", "45"])


def _create(seq: int, fields: dict[str, object], extra: dict[str, object]) -> tuple[RecordGraph, Delta, bytes]:
    """A create as node 44 writes it (core.graph, random salts): (graph, delta, signed-to-be body)."""
    values = validate_person(fields, today=date.today())
    values = {k: v for k, v in values.items() if v is not None} | extra
    graph = RecordGraph("person", str(uuid.uuid4()), graph_rules("person"))
    at = Timestamp(now_ms(), 0, "province-44")
    _, delta, body = graph.write(values, origin="province-44", epoch=0, seq=seq, at=at, op="create",
                                 operator="operator-44-admin", salt=lambda: os.urandom(16))
    return graph, delta, body


def _newer_release_delta(seq: int, fields: dict[str, object]) -> tuple[RecordGraph, Delta, bytes]:
    """What a newer node 44 would sign: a higher protocol, a new top-level key, a new record field."""
    graph, delta, body = _create(seq, fields, {NEW_FIELD: "HC-4401-0099-7"})  # core.graph does not check the schema
    newer = replace(delta, version=NEWER)
    obj = json.loads(newer.to_body())
    assert obj["v"] == NEWER and obj["set"] == json.loads(body)["set"]  # the same commitments
    obj["x_new_feature"] = FEATURE
    return graph, newer, canonical.dumps(obj)


def test_deltas_from_a_newer_release_are_kept_and_passed_on(fed: Fed) -> None:
    rng = random.Random("newer-release")
    graph, delta, body = _newer_release_delta(10**6, person(rng, household="45", residence="44"))
    pid = delta.record_id
    got = parse(body, delta.openings())  # this release reads it ...
    assert got.values[NEW_FIELD] == "HC-4401-0099-7" and got.version == NEWER
    assert got.to_body() != body  # ... but could not re-create those bytes: they must travel as signed

    s44 = signer(fed, "44")
    (seal,) = s44.seal_batch([body])
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der], changes=[
        wire.signed_change(Envelope(body, seal, delta.openings()))]))
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (1, 0, 0)

    def has_new_field(identity: str) -> dict:
        rec = fed.get(identity, pid)
        assert rec is not None and rec.get(NEW_FIELD) == "HC-4401-0099-7", rec
        return rec

    at45 = eventually(lambda: has_new_field("province-45"), 60, message="the newer delta did not reach 45")
    at_national = eventually(lambda: has_new_field(NATIONAL), 60, message="it did not reach national")
    assert at45 == at_national
    written = {k: v for k, v in delta.values.items() if k != "_deleted"}
    assert {k: v for k, v in at45.items() if k not in ("person_id", "_meta")} == written
    # Every replica stores exactly the bytes 44 signed (its signature stays verifiable downstream),
    # under their hash, with the values beside them.
    for identity in ("province-45", NATIONAL, PEARL):
        (row,) = logged(fed, identity, "record_id = ?", (pid,))
        assert bytes(row["body"]) == body, identity
        assert (row["key_id"], bytes(row["signature"])) == (seal.key_id, seal.signature)
        assert parse(bytes(row["body"]), bytes(row["openings"])) == got
    assert fed.status("province-45")["quarantined"] == 0 and fed.status(NATIONAL)["quarantined"] == 0

    # An operator at 45 (this release) updates another field with the ordinary CLI.
    out = subprocess.run([sys.executable, "-m", "cli.main", "person", "update", "-c",
                          str(fed.fed.configs["province-45"]), pid, "--set", "residence_city=南宁市"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    updated = fed.get("province-45", pid)
    assert updated is not None
    assert updated["residence_city"] == "南宁市" and updated[NEW_FIELD] == "HC-4401-0099-7"
    assert updated["_meta"]["conflicts"] == {}

    # 45's delta carries only what 45 wrote, on top of the newer delta: national merges the two.
    fed.arrives(NATIONAL, pid, updated, timeout=60)
    rows = logged(fed, NATIONAL, "record_id = ?", (pid,))
    assert [r["origin"] for r in rows] == ["province-44", "province-45"]
    mine = parse(bytes(rows[1]["body"]), bytes(rows[1]["openings"]))
    assert mine.deps == (delta_id(body),) and NEW_FIELD not in mine.values and mine.version == PROTOCOL
    assert bytes(rows[0]["body"]) == body
    fed.quiet(timeout=60)
    for identity in ("province-44", "province-45", NATIONAL):
        assert fed.status(identity)["quarantined"] == 0, identity


def test_a_newer_delta_missing_a_known_check_is_still_refused(fed: Fed) -> None:
    """A newer protocol relaxes only what this release does not know: a known field's bad value,
    or an opening that does not match its commitment, is refused as from any release."""
    rng = random.Random("newer-but-bad")
    _, delta, body = _newer_release_delta(10**6 + 2, person(rng, household="45", residence="44"))
    s44 = signer(fed, "44")
    bad_value = replace(delta, values={**delta.values, "children": -1}, commitments={}, salts={})
    bad_body = canonical.dumps({**json.loads(bad_value.to_body()), "x_new_feature": FEATURE})
    swapped = delta.openings().replace(b"HC-4401-0099-7", b"HC-0000-0000-0")
    bodies = [bad_body, body]
    seals = s44.seal_batch(bodies)
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der], changes=[
        wire.signed_change(Envelope(bad_body, seals[0], bad_value.openings())),
        wire.signed_change(Envelope(body, seals[1], swapped))]))
    assert (ack.accepted, ack.quarantined) == (0, 2)
    reasons = [q["reason"] for q in fed.quarantine(PEARL)]
    assert any(r.startswith("malformed: set.children:") for r in reasons), reasons
    assert f"malformed: openings.{NEW_FIELD}: does not match its commitment" in reasons, reasons
    assert fed.get(NATIONAL, delta.record_id) is None


def test_a_hello_with_a_newer_protocol_is_answered_and_the_stream_works(fed: Fed) -> None:
    rng = random.Random("newer-hello")
    s44 = signer(fed, "44")
    graph, delta, body = _create(10**6 + 1, person(rng, household="45", residence="44"), {})
    (seal,) = s44.seal_batch([body])
    with peer_channel(fed, "province-44", PEARL) as channel:
        stream = RawPush(channel)
        reply = stream.exchange(fpb.PushRequest(hello=fpb.Hello(protocol=NEWER, software="yipanqi 0.3.0",
                                                                identity="province-44")))
        assert reply.WhichOneof("msg") == "hello"
        assert (reply.hello.protocol, reply.hello.identity) == (wire.PROTOCOL, PEARL) == (PROTOCOL, PEARL)
        reply = stream.exchange(fpb.PushRequest(batch=fpb.Batch(
            cursor=7, certificates=[s44.cert_der], changes=[wire.signed_change(Envelope(body, seal,
                                                                                        delta.openings()))])))
        assert reply.WhichOneof("msg") == "ack"
        assert (reply.ack.cursor, reply.ack.accepted, reply.ack.quarantined) == (7, 1, 0)
        stream.close()
    expected = shown(state_of(graph))  # the record as 44's own graph makes it
    fed.arrives("province-45", delta.record_id, expected, timeout=60)
    fed.arrives(NATIONAL, delta.record_id, expected, timeout=60)
