"""A federation upgraded one province at a time: a newer release beside this one.

A newer release may raise the protocol version, add top-level keys to the
change envelope and add record fields. This release must accept its signed
changes, keep the exact signed bytes, show and pass on the fields it does not
know, and keep them when its own operators edit other fields of the record.
The newer peer is simulated faithfully: real node-44 credentials, a body built
the way a node builds one and extended the way a newer release would, signed
with 44's real signing key and pushed over 44's real TLS certificate.

Provinces 44 and 45 (hub-pearl) and hub-national.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date

import pytest

from core import canonical
from core.apply import local_write
from core.change import Envelope, parse
from core.hlc import Timestamp
from core.person import validate_person
from runtime import wire
from runtime.replica import now_ms
from tests.integration.conftest import Fed, eventually, person
from tests.integration.test_attacks import (NATIONAL, PEARL, RawPush, launch, logged, peer_channel, push, shown,
                                            signer)
from yipanqi.v2 import federation_pb2 as fpb

NEW_FIELD = "health_card_no"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    yield from launch(tmp_path_factory.mktemp("mixed"), ["44", "45"])


def _newer_release_body(seq: int, fields: dict[str, object]) -> tuple[str, bytes]:
    """What a newer node 44 would sign: protocol 2, a new envelope key, a new record field."""
    values = validate_person(fields, today=date.today())
    values[NEW_FIELD] = "HC-4401-0099-7"  # local_write stamps values as given; it does not validate them
    record_id = str(uuid.uuid4())
    change = local_write(None, kind="person", record_id=record_id, values=values, node="province-44", seq=seq,
                         at=Timestamp(now_ms(), 0, "province-44"), op="create", operator="operator-44-admin")
    obj = json.loads(change.to_body())
    assert obj["v"] == 1
    obj["v"] = 2
    obj["x_new_feature"] = {"consent": {"scope": ["health"], "given_on": "2025-01-01"}, "level": 3}
    return record_id, canonical.dumps(obj)


def test_changes_from_a_newer_release_are_kept_and_passed_on(fed: Fed) -> None:
    rng = random.Random("newer-release")
    pid, body = _newer_release_body(10**6, person(rng, household="45", residence="44"))
    change = parse(body)  # this release reads it ...
    assert change.state.values()[NEW_FIELD] == "HC-4401-0099-7"
    assert change.to_body() != body  # ... but could not re-create those bytes: they must travel as signed

    s44 = signer(fed, "44")
    (seal,) = s44.seal_batch([body])
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, certificates=[s44.cert_der],
                                                    changes=[wire.signed_change(Envelope(body, seal))]))
    assert (ack.accepted, ack.duplicates, ack.quarantined) == (1, 0, 0)

    def has_new_field(identity: str) -> dict:
        rec = fed.get(identity, pid)
        assert rec is not None and rec.get(NEW_FIELD) == "HC-4401-0099-7", rec
        return rec

    at45 = eventually(lambda: has_new_field("province-45"), 60, message="the newer change did not reach 45")
    at_national = eventually(lambda: has_new_field(NATIONAL), 60, message="it did not reach national")
    assert at45 == at_national
    assert {k: v for k, v in at45.items() if k not in ("person_id", "_meta")} == change.state.values()
    # Every replica stores exactly the bytes 44 signed (its signature stays verifiable downstream).
    for identity in ("province-45", NATIONAL, PEARL):
        (row,) = logged(fed, identity, "record_id = ?", (pid,))
        assert bytes(row["body"]) == body, identity
        assert (row["key_id"], bytes(row["signature"])) == (seal.key_id, seal.signature)
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

    # 45's change carries the whole record, the newer field included, to 44 and national.
    fed.arrives("province-44", pid, updated, timeout=60)
    fed.arrives(NATIONAL, pid, updated, timeout=60)
    rows = logged(fed, "province-44", "record_id = ?", (pid,))
    assert [r["origin"] for r in rows] == ["province-45"]  # 44 never had it from itself: this release had it
    assert parse(bytes(rows[0]["body"])).state.values()[NEW_FIELD] == "HC-4401-0099-7"
    fed.quiet(timeout=60)
    for identity in ("province-44", "province-45", NATIONAL):
        assert fed.status(identity)["quarantined"] == 0, identity


def test_a_hello_with_a_newer_protocol_is_answered_and_the_stream_works(fed: Fed) -> None:
    rng = random.Random("newer-hello")
    s44 = signer(fed, "44")
    values = validate_person(person(rng, household="45", residence="44"), today=date.today())
    change = local_write(None, kind="person", record_id=str(uuid.uuid4()), values=values, node="province-44",
                         seq=10**6 + 1, at=Timestamp(now_ms(), 0, "province-44"), op="create", operator=None)
    body = change.to_body()
    (seal,) = s44.seal_batch([body])
    with peer_channel(fed, "province-44", PEARL) as channel:
        stream = RawPush(channel)
        reply = stream.exchange(fpb.PushRequest(hello=fpb.Hello(protocol=2, software="yipanqi 0.2.0",
                                                                identity="province-44")))
        assert reply.WhichOneof("msg") == "hello"
        assert (reply.hello.protocol, reply.hello.identity) == (wire.PROTOCOL, PEARL) == (1, PEARL)
        reply = stream.exchange(fpb.PushRequest(batch=fpb.Batch(
            cursor=7, certificates=[s44.cert_der], changes=[wire.signed_change(Envelope(body, seal))])))
        assert reply.WhichOneof("msg") == "ack"
        assert (reply.ack.cursor, reply.ack.accepted, reply.ack.quarantined) == (7, 1, 0)
        stream.close()
    fed.arrives("province-45", change.record_id, shown(change.state), timeout=60)
    fed.arrives(NATIONAL, change.record_id, shown(change.state), timeout=60)
