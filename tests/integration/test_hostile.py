"""Hostile peers and clients against real processes over real mTLS.

A province-44 node certificate is valid, so its holder gets through TLS; what
it pushes must still pass the hub's intake (signature end to end, origin,
authorisation), and one bad change must not disturb the stream or the rest
of the batch. Clients without a federation certificate never get past the
handshake; an operator is confined to their own province.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import date
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.ca import create_ca, issue_identity
from certs.signing import Signer
from runtime.config import load_any
from core.change import Envelope
from core.delta import Delta, delta_id
from core.graph import RecordGraph
from core.graphstate import state_of
from core.hlc import Timestamp
from core.kinds import graph_rules
from core.person import validate_person
from runtime import wire
from runtime.replica import now_ms
from runtime.records import described
from runtime.transport import secure_channel
from tests.integration.conftest import Fed, person, RawPush
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc
from yipanqi.v2 import federation_pb2 as fpb
from yipanqi.v2 import federation_pb2_grpc as fpb_grpc

NATIONAL = "hub-national"
SEQ = 10**6  # far above anything node 44 writes itself in these tests


def _address(fed: Fed, identity: str) -> str:
    return load_any(fed.fed.configs[identity]).listen


def _node_channel(fed: Fed, code: str, target: str) -> grpc.Channel:
    """A channel to ``target`` authenticated with node ``code``'s own TLS certificate."""
    d = fed.root / "nodes" / code
    return secure_channel(_address(fed, target), target, fed.root / "ca" / "ca.crt", d / "tls.crt", d / "tls.key")


def _signer(fed: Fed, code: str) -> Signer:
    d = fed.root / "nodes" / code
    return Signer.load(d / "sign.key", d / "sign.crt")


def _change(origin: str, seq: int, fields: dict[str, object]) -> Delta:
    """A create delta by ``origin``, routed to the provinces its values name (as a node would)."""
    values = validate_person(fields, today=date.today())
    values = {**{k: v for k, v in values.items() if v is not None}, "_deleted": False}
    routes = frozenset(str(values[f]) for f in ("household_province", "residence_province"))
    return Delta("person", str(uuid.uuid4()), origin, 0, seq, Timestamp(now_ms(), 0, origin), "create", None, (), (),
                 values, routes, {})


def _sealed(signer: Signer, change: Delta) -> fpb.SignedChange:
    body = change.to_body()
    (seal,) = signer.seal_batch([body])
    return wire.signed_change(Envelope(body, seal, change.openings()))


def _shown(change: Delta) -> dict:
    """The record as the Admin API shows it after holding only ``change``."""
    graph = RecordGraph("person", change.record_id, graph_rules("person"))
    graph.receive(delta_id(change.to_body()), change, author=change.origin, now_ms=change.at.wall_ms)
    return json.loads(json.dumps(described(state_of(graph)), ensure_ascii=False, sort_keys=True))


def test_hub_quarantines_hostile_changes_and_keeps_serving(federation: Fed, rng: random.Random) -> None:
    fed = federation
    s44, s45 = _signer(fed, "44"), _signer(fed, "45")

    good = _change("province-44", SEQ, person(rng, household="45", residence="44"))
    forged = _change("province-44", SEQ + 1, person(rng, household="45", residence="44"))
    foreign = _change("province-45", SEQ + 2, person(rng, household="45", residence="44"))
    unauthorised = _change("province-44", SEQ + 3, person(rng, household="11", residence="31"))

    forged_msg = _sealed(s44, forged)
    sig = bytearray(forged_msg.seal.signature)
    sig[7] ^= 0x5A
    forged_msg.seal.signature = bytes(sig)  # valid body, altered signature
    garbled = _sealed(s44, _change("province-44", SEQ + 4, person(rng, household="45", residence="44")))
    garbled.seal.signature = b"short"  # not even a well-formed seal

    batch = fpb.Batch(cursor=1, certificates=[s44.cert_der, s45.cert_der], changes=[
        forged_msg,                    # (a) forged signature
        _sealed(s45, foreign),         # (b) authored (and correctly signed) by another province
        _sealed(s44, unauthorised),    # (c) 44's signature on a record not involving 44
        _sealed(s44, good),            # (d) a good change, after the bad ones
    ])
    # A regional hub checks format, signature and origin; whether 44 may write (c) is the history's
    # to say, so it routes (c) by its signed head to the national hub, which refuses it.
    with _node_channel(fed, "44", "hub-pearl") as channel:
        push = RawPush(channel, timeout=60)
        hello = push.exchange(fpb.PushRequest(hello=wire.hello("province-44")))
        assert hello.WhichOneof("msg") == "hello" and hello.hello.identity == "hub-pearl"
        reply = push.exchange(fpb.PushRequest(batch=batch))
        assert reply.WhichOneof("msg") == "ack"
        assert (reply.ack.cursor, reply.ack.accepted, reply.ack.duplicates, reply.ack.quarantined) == (1, 2, 0, 2)

        # The same stream keeps working: a second good change, a replay of the
        # first (harmless) and a different body under the first's (origin, seq): equivocation,
        # kept as a concurrent write (here another record) and flagged, not quarantined.
        good2 = _change("province-44", SEQ + 10, person(rng, household="45", residence="44"))
        equivocating = _change("province-44", SEQ, person(rng, household="45", residence="44"))
        reply = push.exchange(fpb.PushRequest(batch=fpb.Batch(cursor=2, changes=[
            _sealed(s44, good2), _sealed(s44, good), _sealed(s44, equivocating)])))
        assert (reply.ack.cursor, reply.ack.accepted, reply.ack.duplicates, reply.ack.quarantined) == (2, 2, 1, 0)
        # (e) a malformed seal: its batch is refused whole (runtime.replica), and the stream still goes on.
        reply = push.exchange(fpb.PushRequest(batch=fpb.Batch(cursor=3, changes=[garbled])))
        assert (reply.ack.cursor, reply.ack.accepted, reply.ack.duplicates, reply.ack.quarantined) == (3, 0, 0, 1)
        push.close()

    # Good changes are delivered end to end (the exact signed state) and go up to national.
    for change in (good, good2, equivocating):
        fed.arrives("province-45", change.record_id, _shown(change))
        fed.arrives(NATIONAL, change.record_id, _shown(change))

    rows = {(q["record_id"], q["seq"]): q for q in fed.quarantine("hub-pearl")}
    expected = {
        (forged.record_id, SEQ + 1): "bad signature: ",
        (foreign.record_id, SEQ + 2): "malformed: province-44 may only push deltas it authored",
    }
    for key, prefix in expected.items():
        assert key in rows, f"{key} not quarantined: {list(rows)}"
        assert rows[key]["reason"].startswith(prefix), rows[key]["reason"]
        assert rows[key]["peer"] == "province-44"
    (row,) = [q for q in fed.quarantine(NATIONAL) if (q["record_id"], q["seq"]) == (unauthorised.record_id, SEQ + 3)]
    assert row["reason"].startswith("unauthorised writer: a create by province-44 must involve its author"), row
    assert (row["peer"], row["charged"]) == ("hub-pearl", "province-44"), row
    assert any(q["reason"].startswith("malformed: batch of 1 changes refused whole: a change's seal or body does "
                                      "not decode (seal.signature") for q in fed.quarantine("hub-pearl"))
    assert fed.status("hub-pearl")["quarantined"] >= 3  # (a), (b) and (e); (c) is the national hub's
    assert fed.status(NATIONAL)["quarantined"] >= 1
    assert fed.status("hub-pearl")["equivocating"]["province-44"]["seq"] == SEQ

    # The hub keeps serving: an ordinary write afterwards still syncs.
    normal = fed.write("province-44", "create", person(rng, household="45", residence="44"))
    fed.arrives("province-45", normal["person_id"], normal)
    fed.arrives(NATIONAL, normal["person_id"], normal)
    fed.quiet()

    # Nothing refused went anywhere (the regional hub's log holds (c), which only the national hub was sent).
    for change in (forged, foreign, unauthorised):
        for identity in ("province-11", "province-31", "province-44", "province-45", NATIONAL):
            assert fed.get(identity, change.record_id) is None, f"{identity} holds refused {change.record_id}"
        assert fed.history(NATIONAL, change.record_id) == [], "a refused delta entered the national hub's log"
    for change in (forged, foreign):
        assert fed.history("hub-pearl", change.record_id) == [], "a refused delta entered the hub's log"
    assert fed.get("province-45", good.record_id) == _shown(good)  # the equivocating body is another record
    assert fed.status("province-45")["quarantined"] == 0


def test_push_from_a_node_outside_the_region_is_refused(federation: Fed) -> None:
    with _node_channel(federation, "11", "hub-pearl") as channel:
        with pytest.raises(grpc.RpcError) as err:
            RawPush(channel, timeout=60).exchange(fpb.PushRequest(hello=wire.hello("province-11")))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _refused_at_handshake(address: str, target: str, creds: grpc.ChannelCredentials) -> None:
    with grpc.secure_channel(address, creds) as channel:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        with pytest.raises(grpc.RpcError) as err:
            list(fpb_grpc.FederationStub(channel).Push(iter([fpb.PushRequest(hello=wire.hello(target))]),
                                                       timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
        with pytest.raises(grpc.RpcError) as err:
            apb_grpc.AdminStub(channel).Status(apb.Empty(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


@pytest.mark.parametrize("target", ["hub-pearl", "province-44"])
def test_client_without_a_certificate_is_refused_in_the_handshake(federation: Fed, target: str) -> None:
    ca = (federation.root / "ca" / "ca.crt").read_bytes()
    _refused_at_handshake(_address(federation, target), target, grpc.ssl_channel_credentials(root_certificates=ca))


@pytest.mark.parametrize("target", ["hub-pearl", "province-44"])
def test_client_certificate_from_another_ca_is_refused(federation: Fed, tmp_path: Path, target: str) -> None:
    rogue = create_ca(tmp_path / "rogue-ca")
    # Same name as a real node, issued by a CA the federation does not trust.
    paths = issue_identity(rogue, "province-44", tmp_path / "rogue-44")
    creds = grpc.ssl_channel_credentials(
        root_certificates=(federation.root / "ca" / "ca.crt").read_bytes(),  # we do trust the real server
        private_key=paths.tls_key.read_bytes(), certificate_chain=paths.tls_cert.read_bytes())
    _refused_at_handshake(_address(federation, target), target, creds)


def test_operator_cannot_read_another_provinces_node(federation: Fed, rng: random.Random) -> None:
    fed = federation
    shared = fed.write("province-44", "create", person(rng, household="11", residence="44"))
    pid = shared["person_id"]
    fed.arrives("province-11", pid, shared)  # it is on node 11 (and on 44, where operator-44 may read it)
    op = fed.root / "operators" / "44"
    with secure_channel(_address(fed, "province-11"), "province-11", fed.root / "ca" / "ca.crt",
                        op / "tls.crt", op / "tls.key") as channel:
        stub = apb_grpc.AdminStub(channel)
        calls = [
            lambda: stub.Get(apb.RecordRef(kind="person", record_id=pid), timeout=10),
            lambda: stub.History(apb.RecordRef(kind="person", record_id=pid), timeout=10),
            lambda: list(stub.List(apb.ListRequest(kind="person"), timeout=10)),
            lambda: stub.Status(apb.Empty(), timeout=10),
            lambda: stub.Write(apb.WriteRequest(kind="person", record_id=pid, op="update",
                                                fields_json='{"children": 5}'), timeout=10),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value
    assert fed.get("province-11", pid) == shared  # the refused write changed nothing
    # A node's own certificate is not an operator's either.
    with _node_channel(fed, "44", "province-44") as channel:
        with pytest.raises(grpc.RpcError) as err:
            apb_grpc.AdminStub(channel).Get(apb.RecordRef(kind="person", record_id=pid), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
