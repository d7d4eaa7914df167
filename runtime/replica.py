"""What every running node and hub holds: its store, its trust and its clock.

``Replica`` is where a received batch is turned into stored changes: it learns
the signing certificates that travel with the batch (each is checked against
the federation CA by the keyring before it is trusted), runs every change
through ``runtime.intake.check``, and ingests the result in one transaction.

A batch over the count or size limit (runtime.wire), or with a seal that does not even decode,
is refused whole before any change in it is looked at: one quarantine entry, charged to the
TLS peer, at a cost in proportion to its bytes. What refusals cost beyond that is metered in
runtime.junk (log lines per party, and how fast a peer's own junk is read).

After a batch is committed, ``after_ingest`` (set by province nodes only: node.refollow) is
given the records whose routing fields the batch changed here; what it does never fails the
ingest.

A replica also keeps what is noted in memory around its store: peers' acknowledgements
(``acks``, runtime.acks), written with the next ingested batch or flushed within
``ack_flush_s``, and the latest arrivals for delivery-delay figures (``arrivals``,
runtime.stats). ``close`` writes the noted acks and closes the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import replace
from typing import Callable, Iterable, Sequence

from certs.keyring import Keyring
from certs.revocation import RevocationList
from certs.signing import Verifier
from core.change import Envelope
from core.errors import UnknownAuthor
from core.record import RecordState
from runtime import clock, intake, junk, metrics, wire
from runtime.acks import ACK_FLUSH_S, AckBook
from runtime.stats import Arrivals
from store.store import IngestResult, LogEntry, Refused, Store
from yipanqi.v2 import federation_pb2 as pb

log = logging.getLogger("yipanqi.peer")


RELEASE_EVERY_S = 10.0  # how often a receiving replica re-checks deltas parked until their time


def now_ms() -> int:
    return clock.now_ms()  # the process's wall clock (runtime.clock: [timing].clock_offset_s)


class Replica:
    def __init__(self, identity: str, store: Store, keyring: Keyring,
                 revocations: RevocationList | None = None, *, ack_flush_s: float = ACK_FLUSH_S) -> None:
        self.revocations = revocations or RevocationList(None)
        self._revoked: frozenset[str] = frozenset()
        self.identity = identity
        self.store = store
        self.acks = AckBook(store, flush_s=ack_flush_s)
        self.arrivals = Arrivals()
        self.keyring = keyring
        self.verifier = Verifier(keyring)
        self.rate_log = junk.RateLog(log)
        self._released_at = float("-inf")
        self.pacer = junk.Pacer()
        # Called after each committed ingest with IngestResult.rerouted (province nodes: node.refollow).
        self.after_ingest: Callable[[Sequence[tuple[RecordState | None, RecordState]]], object] | None = None
        self.sync_revocations()
        for der in store.load_keys():
            self._trust(der, save=False)

    def sync_revocations(self) -> None:
        """Drop keys the federation has revoked since we last looked."""
        tokens = self.revocations.tokens()
        for token in tokens - self._revoked:
            self.keyring.revoke(token)
            log.warning("revocation list: %s is revoked (a signing key id or a certificate serial)", token)
        self._revoked = tokens

    def _trust(self, der: bytes, *, save: bool = True) -> None:
        try:
            key_id = self.keyring.add_certificate(der, now=dt.datetime.now(dt.timezone.utc))
        except UnknownAuthor as err:
            log.warning("refused a signing certificate: %s", err)
            return
        if save:
            self.store.save_key(key_id, self.keyring.identity_of(key_id), der, now_ms())

    def learn(self, certificates: Iterable[bytes]) -> None:
        for der in certificates:
            if len(der) > 16_384:
                log.warning("refused a signing certificate of %d bytes", len(der))
                continue
            self._trust(der)

    def certificates_for(self, entries: Sequence[LogEntry], sent: set[str]) -> list[bytes]:
        """Signing certificates the receiver needs and has not been sent on this stream."""
        out = []
        for e in entries:
            key_ids = [e.seal.key_id]
            if e.relay:  # the deltas it relays are signed by their own writers (core.relay)
                key_ids += [r.seal.key_id for r in e.envelope.relayed]
            for key_id in key_ids:
                if key_id not in sent and key_id in self.keyring:
                    sent.add(key_id)
                    out.append(self.keyring.certificate_der(key_id))
        return out

    def certificates_for_envelopes(self, envelopes: Sequence[Envelope]) -> list[bytes]:
        """The signing certificates of these envelopes' keys that we hold (a Fetch answer)."""
        return [self.keyring.certificate_der(k) for k in sorted({e.seal.key_id for e in envelopes})
                if k in self.keyring]

    def ingest_batch(self, batch: pb.Batch, *, via: str, peer_may_forward: bool, for_province: str | None,
                     cursor_name: str, fetched: bool = False) -> IngestResult:
        """Check and store one received batch (see the module header); what the peer's own junk
        cost is charged to its pace (``pause_for``)."""
        self.sync_revocations()
        self._release_due()
        refused: list = []
        accepted: list = []
        whole = _whole_batch_problem(batch)
        if whole is None:
            self.learn(batch.certificates)
            try:
                envelopes = [wire.envelope(msg) for msg in batch.changes]
            except intake.RemoteError as err:
                whole = f"a change's seal or body does not decode ({err})"
        started = time.monotonic()
        self.rate_log.flush(started)
        with metrics.APPLY_SECONDS.time():
            if whole is None:
                try:
                    accepted, refused = intake.check(envelopes, self.verifier, peer=via,
                                                     peer_may_forward=peer_may_forward, for_province=for_province,
                                                     fetched=fetched)
                except intake.BatchRefused as err:
                    accepted, whole = [], str(err)
            if whole is not None:
                first = batch.changes[0].body if batch.changes else b""
                refused = [_batch_refusal(first, len(batch.changes), whole, via)]
            applied_ms = now_ms()
            with self.acks.riding() as acks:  # noted acks ride along in the batch's transaction
                # Nodes and the national hub decide each delta on its history (core.graph); a
                # regional hub keeps and routes it by its signed head (Store.ingest).
                result = self.store.ingest(accepted, refused, via=via, now_ms=applied_ms,
                                           cursor=(cursor_name, batch.cursor), acks=acks)
        self.arrivals.add(result.arrived, applied_ms)
        if self.after_ingest is not None and result.rerouted:
            try:
                self.after_ingest(result.rerouted)
            except Exception as err:  # noqa: BLE001 - committed already: a repair never fails the ingest
                log.warning("after-ingest repair failed: %s", type(err).__name__)
        metrics.CHANGES_IN.labels(via).inc(result.applied)
        metrics.DUPLICATES.labels(via).inc(result.duplicates)
        own = 0.0  # what the peer itself is charged for (unverified input), in tokens
        for r in refused:
            metrics.QUARANTINED.labels(r.category).inc(r.count)
            party = r.charged or via
            if party == via:
                own += r.count if r.count == 1 else max(r.count, batch.ByteSize() / junk.BYTES_PER_TOKEN)
            self.rate_log.warning(party, started, "quarantined %s from %s (charged to %s): %s", _changes(r.count),
                                  via, party, _short(r.reason))
        for origin, seq in result.equivocations:  # kept and merged (core.intakeplan); origin and seq only
            log.warning("equivocation: %s signed two different changes with seq %d; both kept as concurrent "
                        "writes, %s flagged in status", origin, seq, origin)
        if result.dropped:
            metrics.QUARANTINE_DROPPED.inc(result.dropped)
        if own:
            self.pacer.charge(via, own, started)
        return result

    def _release_due(self) -> None:
        """Now and then, let in deltas parked because they were stamped ahead of our clock (store.deltas)."""
        at = time.monotonic()
        if self.store.hold_records and at - self._released_at >= RELEASE_EVERY_S:
            self._released_at = at
            released = self.store.release_waiting(now_ms())
            if released.applied:
                log.info("released %d deltas parked until their time", released.applied)

    def close(self) -> None:
        """Write the noted acks (runtime.acks), then close the store; the store is closed even if
        the write fails (its outage is logged already)."""
        try:
            self.acks.close()
        finally:
            self.store.close()

    def pause_for(self, peer: str) -> float:
        """How long (s) ``peer``'s stream should wait before we read more from it (runtime.junk.Pacer)."""
        return self.pacer.charge(peer, 0.0, time.monotonic())


def _whole_batch_problem(batch: pb.Batch) -> str | None:
    n = len(batch.changes)
    if n > wire.MAX_BATCH_CHANGES:
        return f"{n} changes is over the {wire.MAX_BATCH_CHANGES}-change limit"
    size = batch.ByteSize()
    if size > wire.MAX_BATCH_BYTES:
        return f"{size} bytes is over the {wire.MAX_BATCH_BYTES}-byte limit"
    return None


def _batch_refusal(first_body: bytes, count: int, why: str, via: str) -> Refused:
    r = intake.unreadable(first_body[:4096], f"batch of {count} changes refused whole: {why}", via)
    return replace(r, count=max(count, 1))


def _changes(n: int) -> str:
    return "a change" if n == 1 else f"a batch of {n} changes"


def _short(reason: str) -> str:
    """The category and the field or rule of a refusal, never the value it quotes."""
    return ": ".join(reason.split(": ")[:2])[:200]
