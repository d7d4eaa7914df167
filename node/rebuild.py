"""Rebuilding a node that lost its database, from the national database.

Every cross-province record that involves the province is in the national
hub's log, including the changes the province itself wrote. ``rebuild`` pulls
all of them (Subscribe.include_own) into a fresh store until the national hub
says it is caught up, then marks the node's own changes as already delivered,
so that sync resumes without pushing or applying anything twice. Records that
never left the province (intra-province migrants) exist nowhere else and
cannot come back this way: restore those from a backup.
"""

from __future__ import annotations

import queue
from typing import Iterator, Sequence

import grpc

from runtime.config import HubAddress, TLSPaths
from runtime.replica import Replica, now_ms
from runtime.transport import secure_channel
from yipanqi.v2 import federation_pb2 as pb
from yipanqi.v2 import federation_pb2_grpc as pb_grpc


def rebuild(replica: Replica, hubs: Sequence[HubAddress], tls: TLSPaths, province: str) -> tuple[int, list[str]]:
    """Pull everything for ``province`` from each hub in turn (the national hub first).

    The home hub matters too: changes it acknowledged may not have reached the
    national hub yet, and our own among them must come back before we write
    again, or their sequence numbers would be reused. Returns the changes
    applied and the hubs that could not be reached (with why).
    """
    applied, failures = 0, []
    ordered = sorted(hubs, key=lambda h: h.name != "national")
    for hub in ordered:
        try:
            applied += _pull_all(replica, hub, tls, province)
        except grpc.RpcError as err:
            failures.append(f"{hub.identity} at {hub.address}: {err.code().name}: {err.details()}")
    if len(failures) == len(ordered):
        raise RuntimeError("no hub could be reached: " + "; ".join(failures))
    # Our own changes came back from the federation: they need no pushing again.
    replica.store.set_cursor("push", max(replica.store.cursor("push"), replica.store.last_seq()), now_ms())
    return applied, failures


def _pull_all(replica: Replica, hub: HubAddress, tls: TLSPaths, province: str) -> int:
    name = f"pull:{hub.identity}"
    acks: queue.Queue[pb.Ack | None] = queue.Queue()

    def requests() -> Iterator[pb.PullRequest]:
        yield pb.PullRequest(subscribe=pb.Subscribe(cursor=replica.store.cursor(name), include_own=True))
        while (ack := acks.get()) is not None:
            yield pb.PullRequest(ack=ack)

    applied = 0
    with secure_channel(hub.address, hub.identity, tls.ca, tls.cert, tls.key) as channel:
        call = pb_grpc.FederationStub(channel).Pull(requests())
        try:
            for resp in call:
                if resp.WhichOneof("msg") != "batch":
                    continue
                if resp.batch.caught_up:
                    break
                result = replica.ingest_batch(resp.batch, via=hub.identity, peer_may_forward=True,
                                           for_province=province, cursor_name=name)
                applied += result.applied
                acks.put(pb.Ack(cursor=resp.batch.cursor, accepted=result.applied))
        finally:
            acks.put(None)
            call.cancel()
    return applied
