"""The hub's Federation service: accept pushed changes, serve pulls.

Translation only: identities come from the TLS certificate, routing rules
from core.routing, checks from runtime.intake via Replica, storage from the store.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace
from typing import Any, Callable, Iterator

import grpc

from core.errors import Malformed, PermissionDenied, SyncError
from core.identity import Identity
from core.kinds import get_kind
from core.routing import Topology
from core.session import Sender
from hub.share import UpstreamShare
from hub.status import hub_report
from runtime import metrics, reports, wire
from runtime.receiptroute import ReceiptRouter
from runtime.replica import Replica, now_ms
from runtime.transport import PeerGate
from store.store import LogEntry
from yipanqi.v2 import federation_pb2 as pb
from yipanqi.v2 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("yipanqi.hub")

DEFAULT_BATCH = wire.BATCH_CHANGES
DEFAULT_WINDOW = 4
# Caps whatever a subscriber asks for: a Pull whose client never reads holds at most
# MAX_WINDOW batches (of at most wire.BATCH_CHANGES changes and wire.BATCH_BYTES of bodies)
# and at most MAX_IN_FLIGHT bytes of bodies, unless one batch alone is more (gRPC takes a sent
# message into its own buffers at once, so this window is the only bound on what a stream holds).
MAX_WINDOW = 4
MAX_IN_FLIGHT = 1024 * 1024
MIN_ROOM = 64 * 1024  # a batch is read once at least this much of MAX_IN_FLIGHT is free


_HEX_ID = re.compile(r"[0-9a-f]{64}")


def _province_of(identity: str) -> str | None:
    """The province code a receipt's origin names, or None for anything else (unparseable, a hub)."""
    try:
        ident = Identity.parse(identity)
    except SyncError:
        return None
    return ident.name if ident.role == "province" else None


class ReportRelay:
    """How a regional hub passes reports up to the national hub: its own figures and its nodes'
    signed reports, as received. The seam where a test swaps in a misbehaving hub (see
    tests/support/rogue_hub.py); whatever a relay sends, the national hub keeps only what verifies."""

    def upward(self, report: dict[str, Any]) -> dict[str, Any]:
        return report


class FederationServicer(pb_grpc.FederationServicer):
    def __init__(self, replica: Replica, hub: str, topology: Topology, stopping: threading.Event, gate: PeerGate,
                 relay: ReportRelay | None = None, share: UpstreamShare | None = None,
                 serving: Callable[[str, list[LogEntry]], list[LogEntry]] | None = None,
                 receipts: ReceiptRouter | None = None) -> None:
        self.gate = gate
        self.receipts = receipts or ReceiptRouter()  # destinations' receipts on their way to their origins
        # What a Pull serves, given the peer and what it is owed: None (all of it) but in tests of a
        # misbehaving hub, which swap this one behaviour in through run_hub (no private patching).
        self.serving = serving
        self.share = share  # a regional hub's upstream queue, shared per origin (hub.share); None on national
        self.replica = replica
        self.hub = hub  # "pearl", "national"
        self.topology = topology
        self.stopping = stopping
        self.connected: dict[str, dict[str, int]] = {}  # peer -> {"push": since_ms, "pull": since_ms}
        self.desk = reports.Desk(replica)  # signed reports kept, refused reports counted per peer
        self.refused_reports = self.desk.refused  # peer -> reports refused (runtime.reports), for status
        self.relay = relay or ReportRelay()
        # Open streams per (peer, kind): a peer that reconnected while its old stream was still
        # being torn down (or lingers, half-open) has two for a while; it is connected until the last ends.
        self._open: dict[tuple[str, str], int] = {}
        self._open_lock = threading.Lock()

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A consistent copy of who is connected, for status (streams open and close meanwhile)."""
        with self._open_lock:
            return {who: dict(entry) for who, entry in self.connected.items()}

    def _mark(self, who: str, stream: str, on: bool) -> None:
        with self._open_lock:
            entry = self.connected.setdefault(who, {})
            count = self._open.get((who, stream), 0) + (1 if on else -1)
            self._open[(who, stream)] = max(count, 0)
            if on:
                entry[stream] = now_ms()
            else:
                if count <= 0:
                    entry.pop(stream, None)
                entry[f"{stream}_last"] = now_ms()

    def Push(self, request_iterator: Iterator[pb.PushRequest], context: grpc.ServicerContext) -> Iterator[pb.PushResponse]:
        who = self.gate.identity(context)
        if not self.topology.may_push(self.hub, who):
            raise PermissionDenied(f"{who} may not push to hub-{self.hub}")
        may_forward = Identity.parse(who).role == "hub"
        self._mark(who, "push", True)
        try:
            for req in request_iterator:
                # Streams live for days: a certificate revoked since this one opened ends it here.
                self.gate.identity(context)
                kind = req.WhichOneof("msg")
                if kind == "hello":
                    yield pb.PushResponse(hello=wire.hello(self.replica.identity))
                elif kind == "report":
                    self._report(who, req.report.json)
                elif kind == "receipt":  # signed by its destination; the origin verifies it
                    self._take_receipt(who, req.receipt)
                elif kind == "batch":
                    # A regional hub: a province's batch waits for its turn in the queue up (hub.share).
                    # (A province pushes only its own changes: intake checks origin == who.)
                    share = self.share if not may_forward else None
                    if share is not None:
                        held = share.take_turn(who, lambda: context.is_active() and not self.stopping.is_set())
                        if held is None:
                            return  # ended while held: nothing stored, nothing acknowledged
                        if held:
                            metrics.UPSTREAM_SHARE_WAITS.labels(who).inc()
                    try:
                        result = self.replica.ingest_batch(req.batch, via=who, peer_may_forward=may_forward,
                                                           for_province=None, cursor_name=f"in:{who}")
                        if share is not None and result.applied:
                            share.appended(who, self.replica.store.last_lsn(), result.applied)
                    finally:
                        if share is not None:
                            share.end_turn(who)
                    # The pusher's own changes refused here, by seq, so its status shows them quarantined.
                    own = [seq for origin, seq in result.refused if origin == who and seq is not None]
                    yield pb.PushResponse(ack=pb.Ack(cursor=req.batch.cursor, accepted=result.applied,
                                                     duplicates=result.duplicates,
                                                     quarantined=result.quarantined, quarantined_seqs=own,
                                                     quarantine_reason=result.last_refusal or ""))
                    pause = self.replica.pause_for(who)  # over its junk budget: read its next batch later
                    if pause:
                        self.stopping.wait(pause)
                else:
                    raise Malformed("push: each message must be a hello or a batch")
        finally:
            self._mark(who, "push", False)

    def _report(self, who: str, text: str) -> None:
        """Keep what verifies of a peer's report (runtime.reports.Desk); the rest is refused, counted
        against ``who`` and logged without its data; the stream goes on."""
        self.desk.take(who, text)

    def upward_report(self) -> dict[str, Any]:
        """What a regional hub tells the national hub: its own figures and its nodes' signed reports."""
        return self.relay.upward(hub_report(self.replica.store, self.desk.envelopes()))

    def Fetch(self, request: pb.FetchRequest, context: grpc.ServicerContext) -> pb.Batch:
        """Deltas a province lacks (what a parked delta waits for), by id: answered only for a
        record that involves the asker as this hub holds it, with what a newly involved province
        needs (Store.fetch_answer); ids it does not hold, or may not give, are left out."""
        who = self.gate.identity(context)
        ident = Identity.parse(who)
        if ident.role != "province":
            raise PermissionDenied(f"{who} may not fetch: only province nodes fetch what they wait for")
        if len(request.ids) > wire.MAX_FETCH or not all(_HEX_ID.fullmatch(i) for i in request.ids):
            raise Malformed(f"ids: at most {wire.MAX_FETCH} delta ids, each 64 hex digits")
        get_kind(request.kind)  # ValidationError names the kind
        record_id = request.record_id
        if not 0 < len(record_id) <= 64 or not record_id.isprintable():
            raise Malformed("record_id: must be 1..64 printable characters")
        envelopes = self.replica.store.fetch_answer(request.kind, record_id, list(request.ids), ident.name)
        metrics.FETCHED.labels(who).inc(len(envelopes))
        entries = [wire.signed_change(e) for e in envelopes]
        certs = self.replica.certificates_for_envelopes(envelopes)
        return pb.Batch(cursor=0, certificates=certs, changes=entries)

    def _receipts_for(self, who: str) -> Callable[[str], bool]:
        """Which receipts a Pull stream carries: a node's, those about it; a regional hub's (from
        the national hub), those about the provinces it serves."""
        ident = Identity.parse(who)
        if ident.role == "province":
            return lambda origin: origin == who
        served = self.topology.served_by(ident.name)
        return lambda origin: _province_of(origin) in served

    def upward_receipts(self) -> list[pb.Receipt]:
        """A regional hub's receipts for the national hub: those about provinces it does not serve."""
        served = self.topology.served_by(self.hub)
        return self.receipts.take("upstream", lambda origin: _province_of(origin) not in served | {None})

    def _take_receipt(self, who: str, receipt: pb.Receipt) -> None:
        """Keep a receipt to carry to its origin. From a province node, only its own (signed by its
        key, known here) about a province: a node cannot fill the hub's table with streams that
        push out other provinces' receipts. The origin verifies the signature itself."""
        if Identity.parse(who).role == "province":
            if receipt.key_id not in self.replica.keyring and receipt.certificate:
                self.replica.learn([receipt.certificate])  # checked against the CA and revocations
            if (_province_of(receipt.origin) is None or receipt.key_id not in self.replica.keyring
                    or self.replica.keyring.identity_of(receipt.key_id) != who):
                metrics.RECEIPTS_DROPPED.labels(who).inc()
                return
        if not self.receipts.put(receipt):
            metrics.RECEIPTS_DROPPED.labels(who).inc()

    def Pull(self, request_iterator: Iterator[pb.PullRequest], context: grpc.ServicerContext) -> Iterator[pb.PullResponse]:
        who = self.gate.identity(context)
        flt = self.topology.subscription(self.hub, who)
        if flt is None:
            raise PermissionDenied(f"{who} may not pull from hub-{self.hub}")
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("msg") != "subscribe":
            raise Malformed("pull: the first message must be subscribe")
        sub = first.subscribe
        if sub.include_own:
            flt = replace(flt, not_origin=None)  # a province rebuilding its store gets its own changes back
        position = sub.cursor
        limit = min(sub.max_batch or DEFAULT_BATCH, wire.BATCH_CHANGES)
        reading = limit
        # The window (core.session): this thread sends, read_acks releases; both under ``flight``.
        # An ack that names no batch in flight opens no window and moves no cursor.
        sender = Sender(position, min(sub.window or DEFAULT_WINDOW, MAX_WINDOW), max_bytes=MAX_IN_FLIGHT,
                        min_room=MIN_ROOM)
        flight = threading.Condition()
        store = self.replica.store
        cursor_name = f"out:{who}"

        failed: list[Exception] = []  # an error in the ack reader: ends the stream below

        def read_acks() -> None:
            try:
                for req in request_iterator:
                    if req.WhichOneof("msg") == "ack":
                        with flight:
                            acked = sender.ack(req.ack.cursor)
                            flight.notify()
                        if acked is not None:
                            self.replica.acks.note(cursor_name, acked, now_ms())
            except grpc.RpcError:
                pass
            except Exception as exc:  # noqa: BLE001 - acks are only noted in memory, so none is expected; but
                failed.append(exc)  # a stream whose acks go uncounted would never send another batch

        self.replica.acks.set(cursor_name, position, now_ms())
        threading.Thread(target=read_acks, name=f"acks-{who}", daemon=True).start()
        self._mark(who, "pull", True)
        sent_keys: set[str] = set()
        try:
            yield pb.PullResponse(hello=wire.hello(self.replica.identity))
            told_idle = False
            wants = self._receipts_for(who)
            while context.is_active() and not self.stopping.is_set():
                if failed:
                    raise failed[0]
                self.gate.identity(context)  # revoked since the stream opened: end it (PERMISSION_DENIED)
                for receipt in self.receipts.take(f"pull:{who}", wants):
                    yield pb.PullResponse(receipt=receipt)
                # Room in the window first, so nothing read waits in memory for it.
                with flight:
                    while not sender.has_room():
                        if failed:
                            raise failed[0]
                        if not context.is_active() or self.stopping.is_set():
                            return
                        flight.wait(0.5)
                    budget = sender.budget(wire.BATCH_BYTES)
                    position = sender.position
                generation = store.generation
                entries, pos = store.read_log(position, flt=flt, limit=reading)
                fits = wire.cut(entries, budget)
                if fits < len(entries):  # big changes: cut at the byte limit, and read no more than fits next time
                    entries, pos = entries[:fits], entries[fits - 1].lsn
                    reading = fits
                else:
                    reading = min(limit, reading * 2)
                if self.serving is not None:  # tests only: a hub that misbehaves (tests/support/rogue_hub.py)
                    entries = self.serving(who, entries)
                if pos == position:
                    if not told_idle:
                        told_idle = True
                        yield pb.PullResponse(batch=pb.Batch(cursor=position, caught_up=True))
                    store.wait_for_append(generation, 0.5)
                    continue
                told_idle = False
                if not entries:  # all filtered out: move on without a batch (and its fsyncs) for nothing
                    with flight:
                        idle = sender.skip(pos)
                    if idle:
                        # Nothing in flight either: the subscriber has everything it is owed up to
                        # here. Moving its ack past the stretch keeps status from counting through it.
                        self.replica.acks.note(cursor_name, pos, now_ms())
                    continue
                with flight:
                    sender.send(pos, sum(len(e.body) for e in entries))
                certs = self.replica.certificates_for(entries, sent_keys)
                metrics.CHANGES_OUT.labels(who).inc(len(entries))
                yield pb.PullResponse(batch=wire.batch(pos, entries, certs))
                entries = certs = None  # type: ignore[assignment] # held by gRPC now, not by us while we wait
        finally:
            self._mark(who, "pull", False)
