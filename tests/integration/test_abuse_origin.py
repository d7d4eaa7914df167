"""Abuse: one province's *signed* junk cannot starve its region at the national hub (issue 11).

Province 44 floods hub-pearl with changes it really signed, that it may write, and that the
person schema refuses. hub-pearl checks size and head only, so it takes them and forwards them
on the one stream it shares with province 45 up to the national hub, which refuses them. Meanwhile
45 (same region) and 11 (hub-bohai) keep writing records for 65 (hub-northwest), and each
delivery's latency is read from 65's own log: the origin's write time (``at_ms``) to the moment
65 stored it (``received_ms``), both stamped by the processes themselves, so no polling interval
or test-side delay is in the figure. Every delivery is measured while the flood is known to be on
(the national hub is refusing 44's junk before the first write and still after the last, and
44's junk streams are still open).

Federation: 11 (hub-bohai), 44 and 45 (hub-pearl), 65 (hub-northwest), hub-national.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest

from core.change import Envelope
from runtime import wire
from tests.integration.conftest import Fed, eventually, person
from tests.integration.test_abuse import _change_by
from tests.integration.test_attacks import NATIONAL, PEARL, launch, peer_channel, signer
from yipanqi.v2 import federation_pb2 as fpb

LATENCY_S = 2.0
ROUNDS = 5
STREAMS = 3  # of the 4 Push streams an identity may hold (node.fairshare); 44's own node holds one
BATCH = 2000  # the most a batch may hold (node.wire.MAX_BATCH_CHANGES)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    yield from launch(tmp_path_factory.mktemp("abuse-origin"), ["11", "44", "45", "65"])


class SignedJunk:
    """Push requests of 44's signed junk, made as they are sent, without end: each change is 44's
    own (a fresh record of province 31's, which has no node here, so no province pulls it), sealed
    with 44's real key: well-formed, verified and within the person schema, so a regional hub
    takes it; but a create must involve its author, which only the history decides, so the
    national hub refuses it."""

    def __init__(self, fed: Fed) -> None:
        self.s44 = signer(fed, "44")
        self.rng = random.Random("signed-junk")
        full = _change_by("province-44", person(self.rng, household="31", residence="31"))
        # Only the fields that route it: 2,000 whole person creates with their openings would be over a
        # batch's 4 MiB, and this junk is meant to be taken by the regional hub.
        template = replace(full, values={k: full.values[k] for k in ("household_province", "residence_province",
                                                                     "_deleted")}, commitments={}, salts={})
        self.template, self.openings = template.to_body(), template.openings()
        self.rid = re.search(rb'"id":"([^"]+)"', self.template).group(1)  # type: ignore[union-attr]
        self.seq = re.search(rb'"seq":(\d+)', self.template).group(0)  # type: ignore[union-attr]
        self.made = 0  # changes made so far (each with a seq of its own)
        self.lock = threading.Lock()

    def next_request(self) -> bytes:
        with self.lock:
            first, self.made = self.made, self.made + BATCH
        bodies = [self.template.replace(self.rid, str(uuid.uuid4()).encode())
                  .replace(self.seq, b'"seq":%d' % (5 * 10**7 + first + i)) for i in range(BATCH)]
        changes = [wire.signed_change(Envelope(body, seal, self.openings))
                   for body, seal in zip(bodies, self.s44.seal_batch(bodies))]
        return fpb.PushRequest(batch=fpb.Batch(cursor=first + BATCH, changes=changes,
                                               certificates=[self.s44.cert_der])).SerializeToString()


class Flood:
    """Province 44's signed junk, pushed to hub-pearl on STREAMS streams as fast as it will read,
    until stopped."""

    def __init__(self, fed: Fed) -> None:
        self.junk = SignedJunk(fed)
        self.stop = threading.Event()
        self.calls: list[Any] = []
        self.ended: list[str] = []  # streams that ended before the flood was stopped, and how
        self.channel = peer_channel(fed, "province-44", PEARL)
        self.threads = [threading.Thread(target=self._stream, daemon=True) for _ in range(STREAMS)]

    def _requests(self) -> Iterator[bytes]:
        yield fpb.PushRequest(hello=wire.hello("province-44")).SerializeToString()
        while not self.stop.is_set():
            yield self.junk.next_request()

    def _stream(self) -> None:
        call = self.channel.stream_stream("/yipanqi.v2.Federation/Push", request_serializer=lambda b: b,
                                          response_deserializer=fpb.PushResponse.FromString)(self._requests(),
                                                                                             timeout=600)
        self.calls.append(call)
        try:
            for _ in call:
                pass
            if not self.stop.is_set():
                self.ended.append("ended by hub-pearl")
        except grpc.RpcError as err:
            if not self.stop.is_set():
                self.ended.append(f"{err.code().name}: {err.details()}")

    def __enter__(self) -> "Flood":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for call in self.calls:
            call.cancel()
        for t in self.threads:
            t.join(10)
        self.channel.close()


def refused_for_44(fed: Fed) -> int:
    """Changes the national hub has refused and charged to province-44 (kept or dropped over its cap)."""
    share = fed.status(NATIONAL)["quarantine"]["held"].get("province-44", {})
    dropped = fed.status(NATIONAL)["quarantine"]["dropped"].get("province-44", 0)
    return int(share.get("rows", 0)) + int(dropped)


def latency_s(fed: Fed, record: dict, origin: str) -> float:
    """Written at ``origin`` to stored at province 65, by the two processes' own clocks."""
    rid = record["person_id"]
    eventually(lambda: fed.get("province-65", rid), 60, interval=0.05,
               message=f"{origin}'s record never reached province 65")
    (row,) = [r for r in fed.history("province-65", rid) if r["origin"] == origin]
    return (row["received_ms"] - row["at_ms"]) / 1000


def test_a_province_flooding_signed_junk_slows_only_itself(fed: Fed) -> None:
    rng = random.Random("fair-origin")
    before = refused_for_44(fed)
    latencies: dict[str, list[float]] = {"province-45": [], "province-11": []}
    with Flood(fed) as flood:
        # The flood is on: the national hub is refusing 44's junk in earnest.
        eventually(lambda: refused_for_44(fed) >= before + 4 * BATCH, 60, interval=0.1,
                   message="the national hub never refused 44's junk")
        for _ in range(ROUNDS):
            r45 = fed.write("province-45", "create", person(rng, household="45", residence="65"))
            r11 = fed.write("province-11", "create", person(rng, household="11", residence="65"))
            latencies["province-45"].append(latency_s(fed, r45, "province-45"))
            latencies["province-11"].append(latency_s(fed, r11, "province-11"))
        during = refused_for_44(fed)
        worst = {who: max(v) for who, v in latencies.items()}
        assert all(w < LATENCY_S for w in worst.values()), (
            f"delivery to 65 while 44 floods hub-pearl with signed junk: {latencies} (s)")
        assert not flood.ended, f"44's junk streams ended during the measurements: {flood.ended}"
        after = eventually(lambda: (n := refused_for_44(fed)) > during and n, 30, interval=0.1,
                           message="the national hub stopped refusing 44's junk during the measurements")
        held = fed.status(PEARL)["upstream_share"].get("province-44", {})
    # It was 44 that waited: held at its share of hub-pearl's stream up to the national hub.
    assert held.get("held", 0) >= 1 and after > before, held
    # Delayed, not dropped: 44's own honest writes still get through once it stops.
    rec = fed.write("province-44", "create", person(rng, household="44", residence="65"))
    eventually(lambda: fed.get("province-65", rec["person_id"]), 120,
               message="44's honest record never reached 65 after the flood")

