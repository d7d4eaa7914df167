"""Abuse with one province's own valid certificate: one peer cannot starve, stall or blind the others.

One test per finding of issue 11's resource half, each against real processes on loopback:
slot exhaustion (fair share per identity and method, operators reserved, Health and reflection included),
streams surviving revocation, Pull streams that never read (bounded memory), a 60 MB
operator Write (message limits before parsing), a stall by junk (refused whole and cheaply,
capped quarantine, rate-limited log lines, other provinces' delivery under 2 s), unverifiable
junk charged to the peer that sent it, a Report of the wrong types (status and /metrics keep
answering) and received values the person schema refuses.

One small federation for the module: provinces 11 (hub-bohai), 44 and 45 (hub-pearl), hub-national.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from certs.ca import issue_identity, load_ca
from runtime.config import load_any
from core.delta import Delta
from core.hlc import Timestamp
from core.person import validate_person
from runtime import wire
from runtime.fairshare import PER_IDENTITY, PER_METHOD
from runtime.replica import now_ms
from runtime.transport import secure_channel
from store.quarantine import MAX_ROWS
from tests.integration.conftest import Fed, RawPush, eventually, person, yipanqi_ok
from tests.integration.test_attacks import (BOHAI, NATIONAL, PEARL, address, launch, operator_channel, peer_channel,
                                            push, sealed, signer)
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc
from yipanqi.v2 import federation_pb2 as fpb
from yipanqi.v2 import federation_pb2_grpc as fpb_grpc

RSS_GOAL_MB = 250
RE = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    yield from launch(tmp_path_factory.mktemp("abuse"), ["11", "44", "45"])


def rss_mb(fed: Fed, identity: str) -> float:
    pid = fed.fed.procs[identity].pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {identity}")


class RssWatch(threading.Thread):
    """The highest RSS of a process, sampled every 100 ms until stopped."""

    def __init__(self, fed: Fed, identity: str) -> None:
        super().__init__(daemon=True)
        self.fed, self.identity, self.peak = fed, identity, rss_mb(fed, identity)
        self.done = threading.Event()
        self.samples: list[int] = []

    def run(self) -> None:
        while not self.done.wait(0.1):
            now = rss_mb(self.fed, self.identity)
            self.samples.append(round(now))
            self.peak = max(self.peak, now)

    def __enter__(self) -> "RssWatch":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def issued(fed: Fed, tmp_path: Path, identity: str) -> Path:
    """Fresh credentials for ``identity`` from the federation CA (a second certificate of its own)."""
    out = tmp_path / identity
    issue_identity(load_ca(fed.root / "ca"), identity, out)
    return out


def channel_as(fed: Fed, creds: Path, target: str) -> grpc.Channel:
    return secure_channel(address(fed, target), target, fed.root / "ca" / "ca.crt", creds / "tls.crt", creds / "tls.key")


def watch(channel: grpc.Channel) -> Any:
    """A Health.Watch stream, started (its first answer read); raises RpcError if refused."""
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=300)
    next(call)
    return call


def open_push(channel: grpc.Channel, who: str) -> RawPush:
    stream = RawPush(channel, timeout=300)
    stream.exchange(fpb.PushRequest(hello=wire.hello(who)))
    return stream


def open_pull(channel: grpc.Channel, **subscribe: int) -> tuple[Any, queue.Queue]:
    """A Pull stream that subscribes and then never reads nor acks; (call, queue to end its requests)."""
    requests: queue.Queue = queue.Queue()
    requests.put(fpb.PullRequest(subscribe=fpb.Subscribe(**subscribe)))
    call = fpb_grpc.FederationStub(channel).Pull(iter(requests.get, None), timeout=300)
    return call, requests


def operator_status(fed: Fed, target: str) -> dict:
    with operator_channel(fed, target) as channel:
        return json.loads(apb_grpc.AdminStub(channel).Status(apb.Empty(), timeout=10).json)


# -- fair share ---------------------------------------------------------------------------------


def test_one_identity_cannot_take_the_slots_of_another_or_of_operators(fed: Fed) -> None:
    """Was: 152 streams of one certificate, then RESOURCE_EXHAUSTED for everyone, operators included."""
    held: list[Any] = []
    refused: list[str] = []
    with peer_channel(fed, "province-44", PEARL) as ch44:
        try:
            for _ in range(170):  # more than gRPC's old global limit (156 at a hub)
                try:
                    held.append(watch(ch44))
                except grpc.RpcError as err:
                    assert err.code() == RE, err
                    refused.append(err.details())
            assert len(held) == PER_METHOD, len(held)
            assert "province-44 already holds" in refused[0] and "Watch" in refused[0], refused[0]
            pushes = []
            for _ in range(PER_METHOD):  # 44's own link already holds a Push and a Pull here
                try:
                    pushes.append(open_push(ch44, "province-44"))
                except grpc.RpcError as err:
                    assert err.code() == RE, err
            held += [p.call for p in pushes]
            assert len(pushes) == PER_IDENTITY - PER_METHOD - 2, len(pushes)

            # Another identity and the hub's operator are untouched by all that.
            assert operator_status(fed, PEARL)["identity"] == "hub-pearl"
            with peer_channel(fed, "province-45", PEARL) as ch45:
                call, requests = open_pull(ch45, cursor=0, window=1, max_batch=1)
                first = next(call)
                assert first.WhichOneof("msg") == "hello" and first.hello.identity == PEARL
                requests.put(None)
                call.cancel()
                assert watch(ch45) is not None
            rng = random.Random("fair-share")
            rec = fed.write("province-45", "create", person(rng, household="45", residence="44"))
            fed.arrives("province-44", rec["person_id"], rec, timeout=30)
        finally:
            for call in held:
                call.cancel()
        # Slots come back when the streams end.
        eventually(lambda: watch(ch44), 10, message="province-44's slots were not given back")


def reflect(channel: grpc.Channel, method: str) -> tuple[Any, queue.Queue]:
    """A reflection stream on ``method`` (v1 or v1alpha: the same bytes), started: its first
    answer read; raises RpcError if refused."""
    requests: queue.Queue = queue.Queue()
    requests.put(reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString())
    call = channel.stream_stream(method, request_serializer=lambda b: b,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)(
        iter(requests.get, None), timeout=300)
    assert next(call).list_services_response.service
    return call, requests


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_is_limited_per_identity_like_every_other_method(fed: Fed, version: str) -> None:
    """Health and reflection are limited the same way: one certificate holds at most PER_METHOD
    reflection streams; the next is refused, and another identity and the operators are untouched."""
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    held: list[tuple[Any, queue.Queue]] = []
    with peer_channel(fed, "province-44", PEARL) as ch44:
        try:
            for _ in range(PER_METHOD):
                held.append(reflect(ch44, method))
            with pytest.raises(grpc.RpcError) as err:
                reflect(ch44, method)
            assert err.value.code() == RE and "province-44 already holds" in err.value.details(), err.value
            assert "ServerReflectionInfo" in err.value.details()
            with peer_channel(fed, "province-45", PEARL) as ch45:
                call, requests = reflect(ch45, method)
                requests.put(None)
                call.cancel()
            assert operator_status(fed, PEARL)["identity"] == "hub-pearl"
        finally:
            for call, requests in held:
                requests.put(None)
                call.cancel()

        def again() -> bool:
            call, requests = reflect(ch44, method)
            requests.put(None)
            call.cancel()
            return True

        eventually(again, 10, message="province-44's reflection slots were not given back")


def test_revoking_a_certificate_closes_its_open_streams_within_seconds(fed: Fed, tmp_path: Path) -> None:
    """Was: streams opened before the revocation kept their slots 60 s later."""
    creds = issued(fed, tmp_path, "province-44")  # a second certificate of 44's: revoking it leaves 44's own
    with channel_as(fed, creds, PEARL) as channel:
        idle_push = open_push(channel, "province-44")  # hello answered, then nothing: idle
        idle_watch = watch(channel)
        ended: dict[str, grpc.StatusCode] = {}

        def wait_end(name: str, responses: Iterator[Any]) -> None:
            try:
                for _ in responses:
                    pass
                ended[name] = grpc.StatusCode.OK
            except grpc.RpcError as err:
                ended[name] = err.code()

        threads = [threading.Thread(target=wait_end, args=("push", idle_push._responses), daemon=True),
                   threading.Thread(target=wait_end, args=("watch", idle_watch), daemon=True)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        assert ended == {}, ended  # really open and idle
        yipanqi_ok("federation", "revoke", fed.root, creds / "tls.crt")
        revoked_at = time.monotonic()
        for t in threads:
            t.join(timeout=10)
        took = time.monotonic() - revoked_at
        assert set(ended) == {"push", "watch"} and took < 5, (ended, took)
        assert set(ended.values()) <= {grpc.StatusCode.CANCELLED, grpc.StatusCode.PERMISSION_DENIED}, ended
        with pytest.raises(grpc.RpcError) as err:
            open_push(channel, "province-44")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert fed.status("province-44")["hub"]["connected"]  # 44's own certificate is not revoked


# -- bounded memory -------------------------------------------------------------------------------

PULLERS = ["12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41"]


def test_pull_streams_that_never_read_keep_the_hub_under_its_memory_goal(fed: Fed, tmp_path: Path) -> None:
    """Was: 20 never-reading Pulls with the largest batch and window took a hub from 152 MB to 1 GB."""
    # A backlog for every puller at the national hub, over 1 MiB each: records of 11's whose residence
    # is one of 15 other provinces (so their signed routes name it), pushed over 11's own certificate
    # to hub-bohai.
    s11 = signer(fed, "11")
    rng = random.Random("memory")
    shapes = {code: {**person(rng, household="11", residence=code), "name": "名" * 60, "contraception": "避" * 250}
              for code in PULLERS}
    changes = [_change_by("province-11", shapes[PULLERS[i % len(PULLERS)]], seq=10**6 + i) for i in range(6000)]
    lsn = fed.status(NATIONAL)["log_lsn"]
    for i in range(0, len(changes), 500):
        ack = push(fed, "province-11", BOHAI, fpb.Batch(cursor=0, certificates=[s11.cert_der],
                                                        changes=sealed(s11, *changes[i:i + 500])))
        assert ack.accepted == 500, ack
    eventually(lambda: fed.status(NATIONAL)["log_lsn"] >= lsn + len(changes), 180,
               message="the backlog did not reach the national hub")
    per_puller = sum(len(c.to_body()) + len(c.openings()) for c in changes) / len(PULLERS)
    assert per_puller > 1024 * 1024, per_puller  # more than a never-reading Pull may hold

    ca = load_ca(fed.root / "ca")
    channels = []
    calls: list[tuple[Any, queue.Queue]] = []
    base = rss_mb(fed, NATIONAL)
    try:
        with RssWatch(fed, NATIONAL) as rss:
            for code in PULLERS:
                out = tmp_path / code
                issue_identity(ca, f"province-{code}", out)
                channel = channel_as(fed, out, NATIONAL)
                channels.append(channel)
                for _ in range(4):  # 60 streams in all, each asking for the most it can
                    calls.append(open_pull(channel, cursor=0, max_batch=100_000, window=1000))
            # Give the hub time to send all it is going to (it would have sent every change by now).
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                time.sleep(0.5)
            assert all(not call.done() for call, _ in calls), [c.code() for c, _ in calls if c.done()]
            assert operator_status(fed, NATIONAL)["role"] == "hub"
        assert rss.peak < RSS_GOAL_MB, (f"national hub peaked at {rss.peak:.0f} MB (from {base:.0f} MB); "
                                        f"every 0.5 s: {rss.samples[::5]}")
    finally:
        for call, requests in calls:
            requests.put(None)
            call.cancel()
        for channel in channels:
            channel.close()
    assert operator_status(fed, NATIONAL)["role"] == "hub"


def test_a_60mb_operator_write_is_refused_before_it_is_parsed(fed: Fed) -> None:
    """Was: a 60 MB Write took node 44 to 1.86 GB before it was refused."""
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    fields = '{"name": "' + "x" * (60 * 1024 * 1024) + '"}'
    with RssWatch(fed, "province-44") as rss, operator_channel(fed, "province-44", options=unlimited) as channel:
        with pytest.raises(grpc.RpcError) as err:
            apb_grpc.AdminStub(channel).Write(apb.WriteRequest(kind="person", op="create", fields_json=fields),
                                              timeout=60)
        assert err.value.code() == RE, err.value
        time.sleep(0.5)
    del fields
    assert rss.peak < RSS_GOAL_MB, f"node 44 peaked at {rss.peak:.0f} MB"
    assert operator_status(fed, "province-44")["role"] == "node"


# -- junk -----------------------------------------------------------------------------------------------


def _junk(n: int, rng: random.Random, key_id: str) -> bytes:
    """A Push request: a batch of ``n`` well-formed changes of 44's with seals that decode, name 44's
    real key and carry a signature of their own each, which does not verify: each one used to cost
    an Ed25519 verify, a quarantine row and a log line."""
    seal = fpb.Seal(key_id=key_id, index=0, size=1)
    changes = []
    for i in range(n):
        body = (b'{"accepts":[],"at":[1,0,"province-44"],"chain":{},"deps":[],"epoch":0,"id":"junk-%d",'
                b'"kind":"person","merges":[],"op":"create","operator":null,"origin":"province-44",'
                b'"routes":["44"],"seq":%d,"set":{},"v":2}' % (i, 10**9 + i))
        seal.signature = rng.randbytes(64)
        changes.append(fpb.SignedChange(body=body, seal=seal))
    return fpb.PushRequest(batch=fpb.Batch(cursor=0, changes=changes)).SerializeToString()


def test_junk_is_refused_cheaply_capped_and_other_provinces_keep_their_latency(fed: Fed) -> None:
    """Was: one batch of 200,000 junk changes kept a hub busy ~35 s (delivery 11 -> 45 took 24-33 s), and
    every refused change became a quarantine row and a WARNING line, without a cap."""
    rng = random.Random("junk")
    (real,) = sealed(signer(fed, "44"), _change_by("province-44", person(rng, household="45", residence="44")))
    # The small batches name a key no one knows: each change is then refused on its own (unknown
    # author, charged to the TLS peer), so 44 reaches its quarantine cap. (With 44's real key, which
    # the hub learns from 44's first signed status report, a batch is refused whole after its fifth
    # bad signature: one row a batch.)
    unknown = real.seal.key_id[:-8] + ("0" * 8 if not real.seal.key_id.endswith("0" * 8) else "1" * 8)
    big, small = _junk(25_000, rng, real.seal.key_id), _junk(1000, rng, unknown)
    assert len(big) < 8 * 1024 * 1024  # under the message limit
    huge = fpb.PushRequest(batch=fpb.Batch(cursor=0, changes=[  # the finding's batch: 200,000 changes, 15 MB
        fpb.SignedChange(body=rng.randbytes(8), seal=fpb.Seal(key_id="ed25519:junk", signature=bytes(64), index=0,
                                                             size=1)) for _ in range(200_000)])).SerializeToString()
    hello = fpb.PushRequest(hello=wire.hello("province-44")).SerializeToString()
    stop, started_junk = threading.Event(), threading.Event()
    acks: list[fpb.PushResponse] = []
    calls: list[Any] = []

    def stream(messages: list[bytes], then: bytes | None) -> None:
        """One Push stream: ``messages``, then ``then`` over and over until stopped; acks collected."""
        ended = threading.Event()

        def requests() -> Iterator[bytes]:
            yield from messages
            started_junk.set()  # gRPC asks for the next message once the last one is on its way
            while not stop.is_set() and not ended.is_set():
                if then is None:
                    time.sleep(0.05)
                else:
                    yield then

        call = channel.stream_stream("/yipanqi.v2.Federation/Push", request_serializer=lambda b: b,
                                     response_deserializer=fpb.PushResponse.FromString)(requests(), timeout=300)
        calls.append(call)
        try:
            for resp in call:
                acks.append(resp)
        except grpc.RpcError as err:
            assert err.code() in (RE, grpc.StatusCode.CANCELLED), err
        finally:
            ended.set()

    def pusher() -> None:
        stream([hello, huge], None)  # over the message limit now: refused before it is read
        if not stop.is_set():
            stream([hello, big], small)  # under it, and then as fast as the hub takes them

    with peer_channel(fed, "province-44", PEARL) as channel:
        threading.Thread(target=pusher, daemon=True).start()
        try:
            assert started_junk.wait(30)
            started = time.monotonic()
            rec = fed.write("province-11", "create", person(rng, household="11", residence="45"))
            fed.arrives("province-45", rec["person_id"], rec, timeout=30)
            took = time.monotonic() - started
            assert took < 2, f"delivery 11 -> 45 took {took:.1f}s while 44 sent junk to hub-pearl"

            def capped() -> dict:
                q = fed.status(PEARL)["quarantine"]
                return q if q["dropped"].get("province-44", 0) > 0 else {}

            q = eventually(capped, 30, message="hub-pearl never dropped junk over 44's quarantine cap")
            assert q["held"]["province-44"]["rows"] <= MAX_ROWS, q
            assert len(fed.quarantine(PEARL)) <= MAX_ROWS + 10
        finally:
            stop.set()
            for call in calls:
                call.cancel()
    batch_acks = [a.ack for a in acks if a.WhichOneof("msg") == "ack"]
    assert batch_acks and batch_acks[0].quarantined == 25_000 and batch_acks[0].accepted == 0, batch_acks[:1]
    rows = [q for q in fed.quarantine(PEARL) if q["reason"].startswith("malformed: batch of 25000 changes refused "
                                                                         "whole: 25000 changes is over")]
    assert len(rows) == 1 and rows[0]["charged"] == "province-44", rows
    text = fed.fed.log_path(PEARL).read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if "quarantined" in ln and "charged to province-44" in ln]
    assert len(lines) <= 40, f"{len(lines)} quarantine lines for province-44"
    assert "further ones are counted, not logged" in text
    # The honest path still works end to end.
    rec = fed.write("province-44", "create", person(rng, household="45", residence="44"))
    fed.arrives("province-45", rec["person_id"], rec, timeout=30)


def test_unverifiable_input_is_charged_to_the_peer_that_sent_it_not_to_the_origin_it_names(fed: Fed) -> None:
    rng = random.Random("charged")
    s44 = signer(fed, "44")
    forged = _change_by("province-11", person(rng, household="11", residence="45"))
    (msg,) = sealed(s44, forged)  # claims origin 11, signed with 44's key: cannot be verified as 11's
    msg.seal.signature = bytes(64)
    unauthorised = _change_by("province-44", person(rng, household="11", residence="11"))  # 44's real signature
    ack = push(fed, "hub-bohai", NATIONAL, fpb.Batch(cursor=0, certificates=[s44.cert_der],
                                                     changes=[msg, *sealed(s44, unauthorised)]))
    assert (ack.accepted, ack.quarantined) == (0, 2), ack
    rows = {q["record_id"]: q for q in fed.quarantine(NATIONAL)}
    assert rows[forged.record_id]["reason"].startswith("bad signature"), rows[forged.record_id]
    assert rows[forged.record_id]["charged"] == "hub-bohai"
    assert rows[unauthorised.record_id]["reason"].startswith("unauthorised writer"), rows[unauthorised.record_id]
    assert rows[unauthorised.record_id]["charged"] == "province-44"  # verified: its signer pays
    held = fed.status(NATIONAL)["quarantine"]["held"]
    assert "province-11" not in held and held["hub-bohai"]["rows"] >= 1, held


def _change_by(origin: str, fields: dict[str, object], seq: int | None = None, **state: object) -> Delta:
    """A create delta by ``origin`` of ``fields`` (validated) and ``state`` (as given), routed to the
    provinces its values name."""
    values = {**validate_person(fields, today=date.today()), **state, "_deleted": False}
    values = {k: v for k, v in values.items() if v is not None}
    routes = frozenset(str(values[f]) for f in ("household_province", "residence_province"))
    return Delta("person", str(uuid.uuid4()), origin, 0, seq or 2 * 10**6 + random.randrange(10**6),
                 Timestamp(now_ms(), 0, origin), "create", None, (), (), values, routes, {})


# -- everything from outside is validated -----------------------------------------------------------------


def test_a_report_of_the_wrong_types_does_not_blind_status_or_metrics(fed: Fed) -> None:
    """Was: {"quarantined": "x"} every 0.5 s made national Admin.Status INTERNAL and /metrics HTTP 500."""
    metrics_port = load_any(fed.fed.configs[NATIONAL]).metrics_port
    with peer_channel(fed, "province-11", NATIONAL) as ch11, peer_channel(fed, "hub-bohai", NATIONAL) as chb:
        node, hub = open_push(ch11, "province-11"), open_push(chb, "hub-bohai")
        try:
            for _ in range(3):
                node._requests.put(fpb.PushRequest(report=fpb.Report(json=json.dumps({"quarantined": "x"}))))
                hub._requests.put(fpb.PushRequest(report=fpb.Report(json=json.dumps(
                    {"log_lsn": 1, "nodes": {"province-11": {"quarantined": "x", "delivery": []}}}))))
                node._requests.put(fpb.PushRequest(report=fpb.Report(json="[" * 100_000)))
                time.sleep(0.5)

            def refused() -> dict:
                r = operator_status(fed, NATIONAL)["reports"]["refused"]
                return r if r.get("province-11", 0) >= 6 and r.get("hub-bohai", 0) >= 3 else {}

            eventually(refused, 10, message="national did not count the refused reports")
            doc = operator_status(fed, NATIONAL)
            row = [r for r in doc["federation"] if r["province"] == "11"][0]
            assert isinstance(row["rejects"], int), row
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
                assert resp.status == 200
                assert b"yipanqi_quarantine_size" in resp.read()
            assert not node.call.done() and not hub.call.done()  # refused reports do not end the stream
        finally:
            node.call.cancel()
            hub.call.cancel()


def test_received_values_the_person_schema_refuses_are_quarantined_with_the_field(fed: Fed) -> None:
    """Was: receivers stored children = {"nested": [[[[1]]]]}. A delta's values travel as openings
    of its signed commitments, checked field by field against the person schema wherever a delta is
    received (the regional hub included), so neither a nested value nor a scalar the schema refuses
    gets past the first hub. (Sent by 45: the junk test above leaves 44 over its quarantine cap at
    hub-pearl, where these refusals would be counted, not kept.)"""
    rng = random.Random("schema")
    s44, s45 = signer(fed, "44"), signer(fed, "45")
    bad = _change_by("province-45", person(rng, household="45", residence="44"), children="many")
    nested = _change_by("province-45", person(rng, household="45", residence="44"), children=1)
    (msg,) = sealed(s45, nested)  # then its opening of children swapped for a nested value
    opened = json.loads(msg.openings)
    opened["children"][1] = {"nested": [[[[1]]]]}
    msg.openings = json.dumps(opened, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    ack = push(fed, "province-45", PEARL, fpb.Batch(cursor=0, certificates=[s45.cert_der],
                                                    changes=[*sealed(s45, bad), msg]))
    assert (ack.accepted, ack.quarantined) == (0, 2), ack
    newest = fed.quarantine(PEARL)[:2]
    (row,) = [q for q in newest if q["record_id"] == bad.record_id]
    assert row["reason"] == "malformed: set.children: must be an integer, got 'many'", row
    # Refused while its openings were read, before the rest of the delta: by reason, not by record.
    (other,) = [q for q in newest if q is not row]
    assert other["reason"] == "malformed: openings.children: a field value must be a scalar", other
    assert row["charged"] == other["charged"] == "province-45", newest
    fed.quiet(timeout=60)
    for identity in ("province-44", NATIONAL):
        assert fed.get(identity, bad.record_id) is None and fed.get(identity, nested.record_id) is None, identity
    # A value that is fine on its own is kept, whatever other fields say: per field, not per record.
    odd = _change_by("province-44", person(rng, household="45", residence="44"), moved_in_on="1900-01-01")
    ack = push(fed, "province-44", PEARL, fpb.Batch(cursor=0, changes=sealed(s44, odd)))
    assert ack.accepted == 1, ack
    eventually(lambda: fed.get("province-45", odd.record_id), 30, message="45 refused a per-field valid change")

