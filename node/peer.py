"""What every running node and hub holds: its store, its trust and its clock.

``Peer`` is where a received batch is turned into stored changes: it learns
the signing certificates that travel with the batch (each is checked against
the federation CA by the keyring before it is trusted), runs every change
through ``node.intake.check``, and ingests the result in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Iterable, Sequence

from certs.keyring import Keyring
from certs.revocation import RevocationList
from certs.signing import Verifier
from core.errors import UnknownAuthor
from node import intake, metrics, wire
from store.store import IngestResult, LogEntry, Store
from yipanqi.v1 import federation_pb2 as pb

log = logging.getLogger("yipanqi.peer")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Peer:
    def __init__(self, identity: str, store: Store, keyring: Keyring,
                 revocations: RevocationList | None = None) -> None:
        self.revocations = revocations or RevocationList(None)
        self._revoked: frozenset[str] = frozenset()
        self.identity = identity
        self.store = store
        self.keyring = keyring
        self.verifier = Verifier(keyring)
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
            key_id = e.seal.key_id
            if key_id not in sent and key_id in self.keyring:
                sent.add(key_id)
                out.append(self.keyring.certificate_der(key_id))
        return out

    def ingest_batch(self, batch: pb.Batch, *, via: str, peer_may_forward: bool, for_province: str | None,
                     cursor_name: str) -> IngestResult:
        self.sync_revocations()
        self.learn(batch.certificates)
        envelopes, refused = [], []
        for msg in batch.changes:
            try:
                envelopes.append(wire.envelope(msg))
            except intake.RemoteError as err:
                refused.append(intake.unreadable(msg.body, intake.reason(err)))
        with metrics.APPLY_SECONDS.time():
            accepted, bad = intake.check(envelopes, self.verifier, peer=via, peer_may_forward=peer_may_forward,
                                         for_province=for_province, full=self.store.hold_records)
            result = self.store.ingest(accepted, refused + bad, via=via, now_ms=now_ms(),
                                       cursor=(cursor_name, batch.cursor))
        metrics.CHANGES_IN.labels(via).inc(result.applied)
        metrics.DUPLICATES.labels(via).inc(result.duplicates)
        for r in refused + bad:
            metrics.QUARANTINED.labels(r.reason.split(":", 1)[0]).inc()
            log.warning("quarantined a change from %s: %s", via, r.reason)
        return result
