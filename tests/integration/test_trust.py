"""Trust over time, against real processes: revoking TLS certificates, signing keys
and operator certificates through the federation's revocation list
(``yipanqi federation revoke``, DIR/revoked.txt, read by every process), rotating
a node's keys (``yipanqi federation issue``), and operators confined to their scope.

Each test runs its own small federation (provinces 11, 44, 45: hub-national,
hub-bohai, hub-pearl), because revocations are permanent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.ca import fingerprint_key_id
from runtime.config import load_any
from runtime.transport import secure_channel
from tests.integration.conftest import Fed, small_federation, eventually, person, yipanqi_ok
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc
from yipanqi.v2 import federation_pb2 as fpb

PROVINCES = ["11", "44", "45"]
N11, N44, N45 = "province-11", "province-44", "province-45"
NATIONAL, BOHAI, PEARL = "hub-national", "hub-bohai", "hub-pearl"
SLOW = 60  # generous: the machine is shared


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    with small_federation(tmp_path / "fed", PROVINCES) as f:
        yield f


def operator_stub(fed: Fed, scope: str, target: str) -> tuple[grpc.Channel, apb_grpc.AdminStub]:
    """An Admin stub on ``target`` using operator-``scope``'s certificate."""
    op = fed.root / "operators" / scope
    channel = secure_channel(load_any(fed.fed.configs[target]).listen, target, fed.root / "ca" / "ca.crt",
                             op / "tls.crt", op / "tls.key")
    return channel, apb_grpc.AdminStub(channel)


def denied(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value
    return err.value


def log_text(fed: Fed, identity: str) -> str:
    return fed.fed.log_path(identity).read_text(errors="replace")


def quarantined(fed: Fed, identity: str, record_id: str) -> list[dict[str, Any]]:
    return [q for q in fed.quarantine(identity) if q["record_id"] == record_id]


def never_equivocation(fed: Fed, *identities: str) -> None:
    for identity in identities:
        bad = [q for q in fed.quarantine(identity) if q["reason"].startswith("equivocation")]
        assert bad == [], f"{identity} quarantined equivocations: {bad}"
        flagged = fed.status(identity)["equivocating"]
        assert flagged == {}, f"{identity} flags equivocation: {flagged}"


# -- TLS certificate revocation ------------------------------------------------------------------


def test_revoked_node_tls_certificate_is_refused_and_others_keep_syncing(fed: Fed,
                                                                        rng: random.Random) -> None:
    early = fed.write(N45, "create", person(rng, household="45", residence="44"))
    fed.arrives(N44, early["person_id"], early, timeout=SLOW)

    out = yipanqi_ok("federation", "revoke", str(fed.root), str(fed.root / "nodes" / "45" / "tls.crt"))
    assert out.startswith("revoked ")

    # Its live sessions are cut and every new one refused: status shows it, within ~30 s.
    def refused() -> dict:
        hub = fed.status(N45)["hub"]
        err = hub["last_error"] or ""
        return hub if not hub["connected"] and ("revoked" in err or "PERMISSION_DENIED" in err) else {}

    hub = eventually(refused, 40, interval=0.3, message=lambda: f"45 link: {fed.status(N45)['hub']}")
    assert "revoked" in hub["last_error"], hub
    eventually(lambda: "province-45" in (t := log_text(fed, PEARL)) and "revoked" in t, 10,
               message="hub-pearl's log does not say it refused the revoked certificate of province-45")

    # What 45 writes now stays at 45: no hub takes it from a revoked peer.
    stranded = fed.write(N45, "create", person(rng, household="45", residence="44"))

    # Everyone else keeps syncing, in the region and across it.
    a = fed.write(N44, "create", person(rng, household="11", residence="44"))
    b = fed.write(N11, "create", person(rng, household="11", residence="44"))
    for pid, rec, where in ((a["person_id"], a, (N11, NATIONAL)), (b["person_id"], b, (N44, NATIONAL))):
        for identity in where:
            fed.arrives(identity, pid, rec, timeout=SLOW)
    assert fed.status(N44)["hub"]["connected"] and fed.status(N11)["hub"]["connected"]

    assert fed.get(N44, stranded["person_id"]) is None
    assert fed.get(NATIONAL, stranded["person_id"]) is None
    st = fed.status(N45)
    assert st["outbox"]["changes"] >= 1 and not st["hub"]["connected"], st
    assert fed.get(N44, early["person_id"]) == early  # what it sent before stays


def test_node_refuses_a_hub_whose_tls_certificate_is_revoked_and_falls_back_to_national(
        fed: Fed, rng: random.Random) -> None:
    assert fed.status(N44)["hub"]["hub"] == "pearl"  # start_all: every link is up on its home hub
    pearl_crt = fed.root / "hubs" / "pearl" / "tls.crt"
    serial = format(x509.load_pem_x509_certificate(pearl_crt.read_bytes()).serial_number, "x")
    out = yipanqi_ok("federation", "revoke", str(fed.root), str(pearl_crt))
    assert out.startswith("revoked ")

    # The session 44 has open on hub-pearl ends within ~30 s (the link checks its hub again when
    # the list changes) and 44 moves to the national hub, its fallback.
    def off_pearl() -> dict:
        hub = fed.status(N44)["hub"]
        err = hub["last_error"] or ""
        if hub["hub"] == "pearl":
            return {}
        revoked = "hub-pearl" in err and "revoked" in err
        return hub if revoked or (hub["connected"] and hub["hub"] == "national" and hub["fallback"]) else {}

    eventually(off_pearl, 40, interval=0.3, message=lambda: f"44 link: {fed.status(N44)['hub']}")
    refusal = f"refused hub-pearl: its TLS certificate is revoked (serial {serial})"
    eventually(lambda: refusal in log_text(fed, N44), 10,
               message="province-44's log does not say it refused hub-pearl's revoked certificate")

    # A record written at 11 for 44 still arrives: hub-bohai, hub-national, then 44 on its fallback.
    rec = fed.write(N11, "create", person(rng, household="11", residence="44"))
    fed.arrives(N44, rec["person_id"], rec, timeout=SLOW)
    assert fed.status(N44)["hub"]["hub"] != "pearl"

    # A new session is checked before it opens: restarted, 44 refuses hub-pearl at once.
    before = log_text(fed, N44)
    fed.stop(N44)
    fed.start(N44)
    eventually(lambda: refusal in log_text(fed, N44)[len(before):], 20,
               message="restarted, province-44 did not refuse hub-pearl's revoked certificate")
    link = eventually(lambda: (h := fed.status(N44)["hub"])["connected"] and h, 30,
                      message=lambda: f"44 link: {fed.status(N44)['hub']}")
    assert link["hub"] == "national" and link["fallback"], link
    assert "connected to hub-pearl" not in log_text(fed, N44)[len(before):]


# -- signing key revocation ----------------------------------------------------------------------


def test_revoked_signing_key_refuses_local_writes_and_hubs_refuse_what_it_signs(fed: Fed,
                                                                                rng: random.Random) -> None:
    before = fed.write(N45, "create", person(rng, household="45", residence="44"))
    fed.arrives(N44, before["person_id"], before, timeout=SLOW)
    fed.arrives(NATIONAL, before["person_id"], before, timeout=SLOW)

    sign_crt = fed.root / "nodes" / "45" / "sign.crt"
    key_id = fingerprint_key_id(x509.load_pem_x509_certificate(sign_crt.read_bytes()).public_bytes(Encoding.DER))
    out = yipanqi_ok("federation", "revoke", str(fed.root), str(sign_crt))
    assert key_id in out, out
    assert key_id in (fed.root / "revoked.txt").read_text()
    last_seq = fed.status(N45)["last_seq"]

    # Nothing is acknowledged and then lost: 45 refuses to sign with the revoked key, and says why.
    for op, fields, record_id in (("create", person(rng, household="45", residence="44"), ""),
                                  ("update", {"children": 7}, before["person_id"])):
        with pytest.raises(grpc.RpcError) as err:
            fed.write(N45, op, fields, record_id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value
        assert "revoked" in (err.value.details() or "") and key_id in (err.value.details() or ""), err.value
    status = fed.status(N45)
    assert status["last_seq"] == last_seq and status["outbox"]["changes"] == 0, status

    # A compromised 45 that ignores the list and pushes what the revoked key signs is refused by the hub.
    from tests.integration.test_attacks import new_change, push, sealed, signer

    forged = new_change(N45, last_seq + 1, person(rng, household="45", residence="44"))
    ack = push(fed, N45, PEARL, fpb.Batch(cursor=1, changes=sealed(signer(fed, "45"), forged)))
    assert ack.quarantined == 1 and ack.accepted == 0, ack
    (row,) = eventually(lambda: quarantined(fed, PEARL, forged.record_id), SLOW,
                        message=lambda: f"hub-pearl quarantine: {fed.quarantine(PEARL)}")
    assert row["origin"] == N45 and row["reason"].startswith("unknown author") and key_id in row["reason"], row
    assert fed.status(N45)["hub"]["connected"]
    marker = fed.write(N11, "create", person(rng, household="11", residence="44"))
    fed.arrives(N44, marker["person_id"], marker, timeout=SLOW)
    assert fed.get(N44, forged.record_id) is None
    assert fed.get(NATIONAL, forged.record_id) is None
    assert fed.history(PEARL, forged.record_id) == []  # never entered the hub's log
    # Accepted before the revocation: stays, unchanged.
    assert fed.get(N44, before["person_id"]) == before
    assert fed.get(NATIONAL, before["person_id"]) == before
    assert [(r["origin"], r["seq"]) for r in fed.history(N44, before["person_id"])] == [(N45, 1)]
    assert fed.quarantine(N44) == []
    # It stays after 44 restarts (its store's copy of the revoked key is refused on load).
    fed.stop(N44)
    fed.start(N44)
    eventually(lambda: fed.status(N44)["hub"]["connected"], SLOW)
    assert fed.get(N44, before["person_id"]) == before
    assert fed.quarantine(N44) == []


def test_a_change_quarantined_upstream_shows_as_quarantined_at_its_writer(fed: Fed, rng: random.Random) -> None:
    """Issue 10, finding 5: a change written while no hub was reachable, whose signing key is revoked
    before it is pushed, is quarantined by the hub that receives it; the writer's status shows it as
    quarantined upstream (seq, reason category), not as delivered."""
    assert fed.status(N45)["outbox"]["quarantined"] == {"changes": 0, "ranges": [], "last_reason": None,
                                                        "last_hub": None, "last_ms": None}
    fed.stop(PEARL)
    fed.stop(NATIONAL)
    rec = fed.write(N45, "create", person(rng, household="45", residence="44"))
    seq = fed.status(N45)["last_seq"]
    assert fed.status(N45)["outbox"]["changes"] == 1
    sign_crt = fed.root / "nodes" / "45" / "sign.crt"
    yipanqi_ok("federation", "revoke", str(fed.root), str(sign_crt))
    fed.start(NATIONAL)
    fed.start(PEARL)

    st = eventually(lambda: (s := fed.status(N45))["outbox"]["quarantined"]["changes"] == 1 and s, 2 * SLOW,
                    message=lambda: f"province-45 status: {fed.status(N45)}")
    shown = st["outbox"]["quarantined"]
    assert shown["ranges"] == [[seq, seq]] and shown["last_reason"] == "unknown author", shown
    assert shown["last_hub"] in (PEARL, NATIONAL) and shown["last_ms"] is not None, shown
    assert st["acked_seq"] == seq and st["outbox"]["changes"] == 0  # not resent for ever, but not delivered either
    (row,) = quarantined(fed, shown["last_hub"], rec["person_id"])
    assert row["origin"] == N45 and row["seq"] == seq
    assert fed.get(N44, rec["person_id"]) is None
    log = log_text(fed, N45)
    assert f"quarantined 1 of our changes (seqs {seq}): unknown author" in log
    assert rec["name"] not in log


# -- operator certificates -----------------------------------------------------------------------


def test_revoked_operator_certificate_is_refused_by_the_admin_api(fed: Fed) -> None:
    assert fed.status(N44)["identity"] == N44
    yipanqi_ok("federation", "revoke", str(fed.root), str(fed.root / "operators" / "44" / "tls.crt"))

    def refused() -> bool:
        try:
            fed.status(N44)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
            assert "revoked" in (err.details() or ""), err.details()
            return True
        return False

    eventually(refused, 10)
    channel, stub = operator_stub(fed, "44", N44)  # a fresh connection too
    with channel:
        denied(lambda: stub.Status(apb.Empty(), timeout=10))
        denied(lambda: list(stub.List(apb.ListRequest(kind="person"), timeout=10)))
        denied(lambda: stub.Write(apb.WriteRequest(kind="person", op="create", fields_json="{}"), timeout=10))
    # Other operators are unaffected.
    assert fed.status(N45)["identity"] == N45
    assert fed.status(PEARL)["identity"] == PEARL


# -- key rotation ----------------------------------------------------------------------------------


def test_key_rotation_keeps_syncing_and_old_history_verifies(fed: Fed, rng: random.Random) -> None:
    first = fed.write(N45, "create", person(rng, household="45", residence="44"))
    fed.arrives(N44, first["person_id"], first, timeout=SLOW)

    # 44 is down while 45 writes with its old key: it will get that change only after the rotation.
    fed.stop(N44)
    pending = fed.write(N45, "create", person(rng, household="45", residence="44"))
    eventually(lambda: fed.get(NATIONAL, pending["person_id"]) == pending, SLOW)

    d = fed.root / "nodes" / "45"
    old_der = x509.load_pem_x509_certificate((d / "sign.crt").read_bytes()).public_bytes(Encoding.DER)
    old_tls = (d / "tls.crt").read_bytes()
    yipanqi_ok("federation", "issue", str(fed.root), N45)
    new_der = x509.load_pem_x509_certificate((d / "sign.crt").read_bytes()).public_bytes(Encoding.DER)
    assert new_der != old_der and (d / "tls.crt").read_bytes() != old_tls
    old_key, new_key = fingerprint_key_id(old_der), fingerprint_key_id(new_der)

    fed.stop(N45)
    fed.start(N45)
    eventually(lambda: fed.status(N45)["hub"]["connected"], SLOW)
    rotated = fed.write(N45, "create", person(rng, household="45", residence="44"))
    edit = fed.write(N45, "update", {"children": 2}, first["person_id"])

    fed.start(N44)
    for pid, rec in ((first["person_id"], edit), (pending["person_id"], pending),
                     (rotated["person_id"], rotated)):
        fed.arrives(N44, pid, rec, timeout=SLOW)
        fed.arrives(NATIONAL, pid, rec, timeout=SLOW)
    for identity in (N44, PEARL, NATIONAL):
        assert fed.quarantine(identity) == [], identity

    # 44 restarts: both keys come back from its store, nothing is refused, records intact.
    fed.stop(N44)
    fed.start(N44)
    eventually(lambda: fed.status(N44)["hub"]["connected"], SLOW)
    for pid, rec in ((first["person_id"], edit), (pending["person_id"], pending),
                     (rotated["person_id"], rotated)):
        assert fed.get(N44, pid) == rec
    assert fed.quarantine(N44) == []
    assert "refused a signing certificate" not in log_text(fed, N44)

    # Retire the old key: sync goes on with the new one.
    out = yipanqi_ok("federation", "revoke", str(fed.root), old_key, "--note", "rotated")
    assert old_key in out
    later = fed.write(N45, "create", person(rng, household="45", residence="44"))
    again = fed.write(N45, "update", {"children": 3}, first["person_id"])
    for pid, rec in ((later["person_id"], later), (first["person_id"], again)):
        fed.arrives(N44, pid, rec, timeout=SLOW)
        fed.arrives(NATIONAL, pid, rec, timeout=SLOW)
    assert fed.get(N44, pending["person_id"]) == pending  # accepted under the old key: stays
    for identity in (N44, PEARL, NATIONAL):
        assert fed.quarantine(identity) == [], identity
    assert new_key not in (fed.root / "revoked.txt").read_text()
    never_equivocation(fed, PEARL, NATIONAL)


# -- operator scope ------------------------------------------------------------------------------


def test_operator_is_confined_to_its_own_node(fed: Fed, rng: random.Random) -> None:
    shared = fed.write(N44, "create", person(rng, household="11", residence="44"))
    pid = shared["person_id"]
    for identity in (N11, NATIONAL):
        fed.arrives(identity, pid, shared, timeout=SLOW)

    for target in (N11, BOHAI, NATIONAL):
        channel, stub = operator_stub(fed, "44", target)
        with channel:
            denied(lambda: stub.Get(apb.RecordRef(kind="person", record_id=pid), timeout=10))
            denied(lambda: list(stub.List(apb.ListRequest(kind="person"), timeout=10)))
            denied(lambda: stub.Status(apb.Empty(), timeout=10))
            denied(lambda: stub.Quarantine(apb.Empty(), timeout=10))
            err = denied(lambda: stub.Write(apb.WriteRequest(kind="person", record_id=pid, op="update",
                                                             fields_json='{"children": 5}'), timeout=10))
            assert "operator-44-admin" in (err.details() or ""), err.details()
    assert fed.get(N11, pid) == shared  # the refused write changed nothing
    assert fed.get(NATIONAL, pid) == shared

    channel, stub = operator_stub(fed, "44", N44)
    with channel:
        assert stub.Status(apb.Empty(), timeout=10).json
        assert stub.Get(apb.RecordRef(kind="person", record_id=pid), timeout=10).record_id == pid
        reply = stub.Write(apb.WriteRequest(kind="person", record_id=pid, op="update",
                                            fields_json='{"children": 5}'), timeout=10)
        assert reply.record_id == pid
    eventually(lambda: (r := fed.get(N11, pid)) is not None and r["children"] == 5, SLOW)
