"""A downstream peer's link to its hub: push our changes up, pull ours down.

How this works. A Link keeps one session at a time with the first hub in its
list that answers (home hub first, then fallbacks). A session is two bidi
streams on one mTLS channel: Push sends batches read from the store after the
acknowledged cursor and persists the cursor of each Ack that names a batch in
flight (an ack that names none moves nothing); Pull subscribes with our
durable cursor for that hub and ingests every batch in one transaction that
also moves the cursor, then acknowledges it. At most ``WINDOW`` batches are
in flight (the window is core.session's), and batches are read from the
database page by page, so memory stays flat whatever the backlog. When a session fails the Link backs off with
full jitter and tries the next hub; a session on a fallback hub ends after
``fallback_recheck_s`` seconds (runtime.config.Timing) so the home hub is tried again. Idempotent apply
(by digest, core.intakeplan) makes changes that arrive by two paths harmless.

A session starts with a TLS handshake of its own to the hub (gRPC shows a
client nothing of the server's certificate): the certificate must name the
host dialled and be the expected hub's, and a hub whose certificate is revoked
is refused like a failed session, with the reason in ``last_error``; the
revocation check is run again every ``revocation_recheck_s`` seconds on an open
session when the list has changed.

An outage of our own store (``StoreUnavailable``: the database server down or
restarting, the file locked or the disk full) is not the hub's fault: the
session ends, sync pauses (``LinkState.paused``), the link probes the store with
backoff until it takes writes again, and then reconnects to the same hub. It
never moves to a fallback hub for it, and never names a hub in the error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import grpc

from runtime.config import PRODUCTION_TIMING, HubAddress, Timing, TLSPaths
from core.errors import StoreUnavailable, SyncError
from core.session import Receiver, Sender
from runtime import metrics, wire
from runtime.replica import Replica, now_ms
from runtime.transport import describe_failure, secure_channel, server_certificate
from store.store import LogEntry
from yipanqi.v2 import federation_pb2 as pb
from yipanqi.v2 import federation_pb2_grpc as pb_grpc

log = logging.getLogger("yipanqi.link")

WINDOW = 4
FETCH_EVERY_S = 2.0  # how often a node looks at what its parked deltas wait for
FETCH_AFTER_MS = 1000  # a delta parked this long has waited for ordinary delivery
FETCH_RETRY_S = 30.0  # a dependency asked for is asked for again after this long
BATCH = 500

Source = Callable[[int, int], tuple[list[LogEntry], int]]


@dataclass
class LinkState:
    hub: str | None = None
    home: str | None = None
    up_since_ms: int | None = None
    down_since_ms: int | None = None
    last_error: str | None = None
    pushed: int = 0
    pulled: int = 0
    quarantined: int = 0
    paused: bool = False  # sync paused by an outage of our own store (not the hub's fault)

    @property
    def fallback(self) -> bool:
        return self.hub is not None and self.hub != self.home


class Link(threading.Thread):
    def __init__(self, replica: Replica, hubs: Sequence[HubAddress], tls: TLSPaths, *, source: Source,
                 push_cursor: str, for_province: str | None, stop: threading.Event,
                 report: Callable[[], dict] | None = None, on_push_ack: Callable[[int], object] | None = None,
                 timing: Timing = PRODUCTION_TIMING,
                 receipts_out: Callable[[], list[pb.Receipt]] | None = None,
                 on_receipt: Callable[[pb.Receipt], object] | None = None) -> None:
        super().__init__(name="link", daemon=True)
        self.replica = replica
        self.hubs = list(hubs)
        self.tls = tls
        self.source = source
        self.push_cursor = push_cursor
        self.for_province = for_province
        self.stop_event = stop
        self.report = report
        self.on_push_ack = on_push_ack  # a regional hub's upstream share (hub.share) learns what moved up
        # Receipts (issue 17): what we send up (a node's own, signed; a regional hub's to forward)
        # and what to do with one that comes down (a node verifies it; a regional hub forwards it).
        self.receipts_out = receipts_out
        self.on_receipt = on_receipt
        self.timing = timing
        self.state = LinkState(home=self.hubs[0].name, down_since_ms=now_ms())

    # -- session management -------------------------------------------------
    def run(self) -> None:
        index, backoff = 0, 0.5
        while not self.stop_event.is_set():
            hub = self.hubs[index]
            limit = None if index == 0 else self.timing.fallback_recheck_s
            ok = self._session(hub, limit)
            if self.stop_event.is_set():
                break
            if ok is None:  # our store failed, not the hub: same hub again once the store is back
                self._wait_for_store()
                continue
            if ok:
                index, backoff = 0, 0.5
                continue
            index = (index + 1) % len(self.hubs)
            if index == 0:  # tried them all: back off with full jitter
                self.stop_event.wait(random.uniform(0, backoff))
                backoff = min(backoff * 2, self.timing.max_backoff_s)

    def _wait_for_store(self) -> None:
        """Sync is paused by an outage of our store: probe it with backoff (full jitter) until a
        write commits again. Status shows the outage (``store``); the store logs it once."""
        self.state.hub, self.state.up_since_ms, self.state.paused = None, None, True
        if self.state.down_since_ms is None:
            self.state.down_since_ms = now_ms()
        self.state.last_error = "sync paused: this process's store is unavailable (see store)"
        backoff = 0.25
        while not self.stop_event.is_set():
            try:
                self.replica.store.probe()
                break
            except StoreUnavailable:
                self.stop_event.wait(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, self.timing.max_backoff_s)
        self.state.paused = False

    def _session(self, hub: HubAddress, limit: float | None) -> bool | None:
        """Run one session; True if it ended cleanly (time limit), False on the hub's failure,
        None when our own store failed (the hub is not to blame)."""
        checked = self.replica.revocations.tokens()
        try:
            revoked = self._hub_revoked(hub)
        except ssl.SSLError as err:  # not trusted, not the host we dial, or another member
            why = describe_failure(hub.address, err)
            log.error("refused hub-%s: %s", hub.name, why)
            self._down(hub, why)
            return False
        except OSError as err:
            log.debug("hub-%s: no TLS handshake: %s", hub.name, err)
            self._down(hub, "not reachable")
            return False
        if revoked:
            self._down(hub, revoked)
            return False
        channel = secure_channel(hub.address, hub.identity, self.tls.ca, self.tls.cert, self.tls.key,
                                 timing=self.timing)
        try:
            grpc.channel_ready_future(channel).result(timeout=3)
        except grpc.FutureTimeoutError:
            self._down(hub, "not reachable")
            channel.close()
            return False
        stub = pb_grpc.FederationStub(channel)
        done = threading.Event()
        errors: list[str] = []
        store_down: list[StoreUnavailable] = []
        calls: list[grpc.Call] = []
        threads = [
            threading.Thread(target=self._guard, args=(self._push, stub, hub, done, calls, errors, store_down),
                             daemon=True),
            threading.Thread(target=self._guard, args=(self._pull, stub, hub, done, calls, errors, store_down),
                             daemon=True),
        ]
        if self.for_province is not None:  # a province node fetches what its parked deltas wait for
            threads.append(threading.Thread(target=self._guard, daemon=True,
                                            args=(self._fetch, stub, hub, done, calls, errors, store_down)))
        for t in threads:
            t.start()
        deadline = time.monotonic() + limit if limit else None
        next_check, revoked = time.monotonic() + self.timing.revocation_recheck_s, None
        while not done.is_set() and not self.stop_event.is_set():
            if deadline and time.monotonic() > deadline:
                break
            if time.monotonic() >= next_check:  # revoked while we are connected?
                next_check = time.monotonic() + self.timing.revocation_recheck_s
                tokens = self.replica.revocations.tokens()
                if tokens != checked:
                    try:
                        revoked, checked = (self._hub_revoked(hub) if tokens else None), tokens
                    except OSError as err:  # try again next time; a dead hub ends the session anyway
                        log.debug("hub-%s: no TLS handshake: %s", hub.name, err)
                    if revoked:
                        break
            done.wait(0.5)
        done.set()
        for call in list(calls):
            call.cancel()
        for t in threads:
            t.join(timeout=5)
        channel.close()
        if revoked and not self.stop_event.is_set():
            self._down(hub, revoked)
            return False
        if store_down and not self.stop_event.is_set():
            log.debug("session with hub-%s ended: our store is unavailable (%s)", hub.name, store_down[0].reason)
            return None
        if errors and not self.stop_event.is_set():
            self._down(hub, errors[0])
            return False
        return True

    def _hub_revoked(self, hub: HubAddress) -> str | None:
        """Why we must not talk to ``hub``: its TLS certificate is revoked; None if it is not.
        Raises ``OSError`` when no TLS handshake with the hub completes."""
        der = server_certificate(hub.address, hub.identity, self.tls.ca, self.tls.cert, self.tls.key)
        serial = self.replica.revocations.revoked_serial(der)
        if serial is None:
            return None
        log.error("refused hub-%s: its TLS certificate is revoked (serial %s)", hub.name, serial)
        return f"certificate revoked (serial {serial})"

    def _up(self, hub: HubAddress) -> None:
        # Connected once the hub has answered our hello, not when TLS is up: a hub that refuses
        # every stream (a revoked certificate, say) must not show as connected, nor reset down_since.
        self.state.hub, self.state.up_since_ms, self.state.down_since_ms = hub.name, now_ms(), None
        if not self.state.fallback:  # on a fallback, last_error keeps saying why the home hub was left
            self.state.last_error = None
        log.info("connected to hub-%s%s", hub.name, " (fallback)" if self.state.fallback else "")

    def _down(self, hub: HubAddress, why: str) -> None:
        if self.state.down_since_ms is None:
            self.state.down_since_ms = now_ms()
        self.state.hub, self.state.up_since_ms, self.state.last_error = None, None, f"{hub.identity}: {why}"
        log.warning("hub-%s unavailable: %s", hub.name, why)

    def _guard(self, fn: Callable[..., None], stub: pb_grpc.FederationStub, hub: HubAddress, done: threading.Event,
               calls: list, errors: list[str], store_down: list) -> None:
        try:
            fn(stub, hub, done, calls, store_down)
        except grpc.RpcError as err:
            if not done.is_set() and not store_down:
                errors.append(f"{err.code().name}: {err.details()}")
        except StoreUnavailable as err:  # our store, not the hub: nothing half-applied; paused by run()
            store_down.append(err)
        except Exception as err:  # noqa: BLE001 - a broken session must not kill the link
            log.exception("sync session failed")
            errors.append(str(err))
        finally:
            done.set()

    # -- fetch: what parked deltas wait for ------------------------------------
    def _fetch(self, stub: pb_grpc.FederationStub, hub: HubAddress, done: threading.Event, calls: list,
               store_down: list) -> None:
        """Now and then, ask the hub for the dependencies our parked deltas wait for (a hub that
        dropped one, a relay cut short): per record, the ids not held here, at most once per
        ``FETCH_RETRY_S`` each. Only the deltas asked for are taken from the answer, and they go
        through intake and the graph like any others."""
        tried: dict[str, float] = {}
        while not done.wait(FETCH_EVERY_S):
            at = time.monotonic()
            wanted: dict[tuple[str, str], set[str]] = {}
            parked = self.replica.store.parked_deltas(limit=500)
            have = {e.digest for e in parked}
            cutoff = now_ms() - FETCH_AFTER_MS
            for e in parked:
                if e.received_ms > cutoff:
                    continue  # give ordinary delivery a moment first
                for dep in e.waiting_for:
                    if dep != "time" and dep not in have and at - tried.get(dep, float("-inf")) >= FETCH_RETRY_S:
                        wanted.setdefault((e.kind, e.record_id), set()).add(dep)
            for (kind, record_id), ids in sorted(wanted.items()):
                asked = sorted(ids)[:wire.MAX_FETCH]
                for d in asked:
                    tried[d] = at
                try:
                    answer = stub.Fetch(pb.FetchRequest(ids=asked, kind=kind, record_id=record_id), timeout=10)
                except grpc.RpcError as err:
                    metrics.FETCHES.labels("failed").inc()
                    log.info("fetch from hub-%s failed: %s", hub.name, err.code().name)
                    continue
                keep = [c for c in answer.changes if hashlib.sha256(c.body).hexdigest() in ids]
                metrics.FETCHES.labels("answered" if keep else "empty").inc()
                if keep:
                    batch = pb.Batch(cursor=0, certificates=answer.certificates[:len(keep) + 8], changes=keep)
                    result = self.replica.ingest_batch(batch, via=hub.identity, peer_may_forward=True,
                                                       for_province=None, cursor_name=f"fetch:{hub.identity}",
                                                       fetched=True)
                    log.info("fetched %d deltas from hub-%s: %d held, %d released", len(keep), hub.name,
                             result.applied, len(result.released))

    # -- push: our changes up ------------------------------------------------
    def _push(self, stub: pb_grpc.FederationStub, hub: HubAddress, done: threading.Event, calls: list,
              store_down: list) -> None:
        store = self.replica.store
        sent_keys: set[str] = set()
        # The window (core.session): the request thread sends, this one reads acks; both under ``flight``.
        flight = threading.Condition()
        session: list[Sender] = []  # set once the request thread has read the acknowledged cursor

        def requests() -> Iterator[pb.PushRequest]:
            # gRPC runs this on a thread of its own, and an exception here would reach the hub as
            # a cancelled stream (and us as the hub's failure): a store outage ends it quietly.
            try:
                yield from push_requests()
            except StoreUnavailable as err:
                store_down.append(err)
                done.set()

        def push_requests() -> Iterator[pb.PushRequest]:
            yield pb.PushRequest(hello=wire.hello(self.replica.identity))
            sender = Sender(self.replica.acks.cursor(self.push_cursor), WINDOW)
            with flight:
                session.append(sender)
            next_report = 0.0
            while not done.is_set():
                if self.receipts_out is not None:
                    for receipt in self.receipts_out():
                        yield pb.PushRequest(receipt=receipt)
                if self.report is not None and time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.timing.report_every_s
                    yield pb.PushRequest(report=pb.Report(json=json.dumps(self.report(), ensure_ascii=False)))
                generation = store.generation
                entries, pos = self.source(sender.position, BATCH)
                fits = wire.cut(entries)
                if fits < len(entries):  # big changes: read fewer (positions are the source's own)
                    entries, pos = self.source(sender.position, fits)
                if not entries:
                    if pos > sender.position:  # a stretch with nothing to send: read on from its end
                        with flight:
                            idle = sender.skip(pos)
                        if idle:
                            # Nothing in flight either: the hub has all it needs up to here, so
                            # status counts no backlog behind what it will never be sent.
                            self.replica.acks.note(self.push_cursor, pos, now_ms())
                        continue
                    store.wait_for_append(generation, 0.5)
                    continue
                with flight:
                    while not sender.has_room():
                        if done.is_set():
                            return
                        flight.wait(0.5)
                    sender.send(pos)
                certs = self.replica.certificates_for(entries, sent_keys)
                metrics.CHANGES_OUT.labels(hub.identity).inc(len(entries))
                yield pb.PushRequest(batch=wire.batch(pos, entries, certs))

        call = stub.Push(requests())
        calls.append(call)
        stray = 0  # acks that named no batch in flight
        acked_before = self.replica.acks.cursor(self.push_cursor)
        for resp in call:
            if resp.WhichOneof("msg") == "hello":
                self._up(hub)
            elif resp.WhichOneof("msg") == "ack":
                if resp.ack.quarantined and self.for_province is not None:
                    self._quarantined_upstream(hub, resp.ack)
                with flight:
                    acked = session[0].ack(resp.ack.cursor) if session else None
                    flight.notify()
                if acked is None:  # names no batch in flight: it moves no cursor (logged once a session)
                    if not stray:
                        log.warning("hub-%s acknowledged cursor %d, which is not in flight", hub.name, resp.ack.cursor)
                    stray += 1
                    continue
                self.replica.acks.note(self.push_cursor, acked, now_ms())
                if self.for_province is not None:  # what is still owed of these now names this hub (issue 17)
                    store.note_custody(hub.identity, acked_before + 1, acked)
                acked_before = acked
                self.state.pushed += resp.ack.accepted
                if self.on_push_ack is not None:
                    self.on_push_ack(acked)

    def _receipt(self, receipt: pb.Receipt, hub: HubAddress) -> None:
        """A receipt the hub brought down: handed on (verified by a node's desk; forwarded by a
        regional hub). A bad one is logged by its reason, never its contents, and the stream goes on."""
        if self.on_receipt is None:
            return
        try:
            self.on_receipt(receipt)
        except SyncError as err:
            self.replica.rate_log.warning(hub.identity, time.monotonic(), "refused a receipt from hub-%s: %s",
                                          hub.name, f"{err.category}: {err}"[:200])

    def _quarantined_upstream(self, hub: HubAddress, ack: pb.Ack) -> None:
        """The hub took a batch of ours but quarantined some of it: the cursor moves past them
        (resending would be refused again), and they are recorded as quarantined upstream, so
        status never shows them as delivered (store.upstream). Seqs and a category only."""
        reason = ack.quarantine_reason or "not said (an older hub)"
        self.replica.store.note_upstream_quarantine(hub.identity, list(ack.quarantined_seqs), ack.quarantined,
                                                    reason, now_ms())
        log.warning("hub-%s quarantined %d of our changes (seqs %s): %s", hub.name, ack.quarantined,
                    _seq_span(ack.quarantined_seqs), reason)

    # -- pull: changes for us down --------------------------------------------
    def _pull(self, stub: pb_grpc.FederationStub, hub: HubAddress, done: threading.Event, calls: list,
              store_down: list) -> None:
        name = f"pull:{hub.identity}"
        acks: queue.Queue[pb.Ack | None] = queue.Queue()
        receiver = Receiver(self.replica.store.cursor(name), WINDOW)  # here, not in requests(): see _push
        start, window = receiver.subscribe()

        def requests() -> Iterator[pb.PullRequest]:
            yield pb.PullRequest(subscribe=pb.Subscribe(cursor=start, window=window))
            while True:
                ack = acks.get()
                if ack is None:
                    return
                yield pb.PullRequest(ack=ack)

        call = stub.Pull(requests())
        calls.append(call)
        try:
            for resp in call:
                if resp.WhichOneof("msg") == "receipt":
                    self._receipt(resp.receipt, hub)
                    continue
                if resp.WhichOneof("msg") != "batch" or not receiver.takes(resp.batch.caught_up):
                    continue  # caught_up batches take no window slot and need no ack
                result = self.replica.ingest_batch(resp.batch, via=hub.identity, peer_may_forward=True,
                                                for_province=self.for_province, cursor_name=name)
                self.state.pulled += result.applied
                self.state.quarantined += result.quarantined
                acks.put(pb.Ack(cursor=receiver.stored(resp.batch.cursor), accepted=result.applied,
                                duplicates=result.duplicates, quarantined=result.quarantined))
        finally:
            acks.put(None)


def _seq_span(seqs: Sequence[int]) -> str:
    return "unknown" if not seqs else str(seqs[0]) if len(seqs) == 1 else f"{min(seqs)}..{max(seqs)}"
