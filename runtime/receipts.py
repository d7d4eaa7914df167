"""The receipts desk (issue 17): what an author re-sends and alerts on, what a destination signs.

How this works (docs/design/v2-wire.md, section 4). The store keeps the books (store.receipts);
this desk, owned by a node's replica, adds the clock, the keys and the policy:

* **A receipt that arrives** (``receive``) is parsed (``core.receipts.parse_receipt``: a bad one
  is ``Malformed`` naming the key), verified by the current signing certificate of the province
  it names as destination (the national hub's for ``national``; chaining to the federation CA,
  not revoked, not expired now; a certificate travelling with it is learned only through the
  keyring's checks, at most once a minute per key), must be about us, and may not be dated
  more than the report skew ahead of our clock. Only then does the store merge it and settle what it covers. A
  replayed or stale receipt is harmless: receipts merge by union.
* **The author acts** (``tick``, called every second or so). A destination whose oldest
  unreceipted change is older than ``receipt_alert_s`` is an alert naming the hub that had
  custody (logged once per destination and hub, counted in ``/metrics``). What is owed past that
  delay is re-sent (core.receipts' rule), but only to a destination that still *answers*: one
  that signed a receipt with a newer time within the last ``receipt_alert_s`` (a destination signs
  each of its streams at least every third of that, see below), so a province that is simply down
  is not flooded. The caller may add destinations it knows answer by other means (``also_alive``).
* **The destination answers** (``outgoing``): one signed cumulative receipt per (origin, epoch)
  stream, when what it holds of that stream changed and at most once a second, and unchanged at
  least every third of ``receipt_alert_s``, which tells the author it is up even when a hub is
  withholding everything.

Times come from an injected ``now_ms``; nothing here sleeps. Errors are returned as exceptions
from core.errors; the caller logs and quarantines, as for any peer input.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Callable, Protocol

from cryptography import x509

from certs.ca import fingerprint_key_id
from certs.signing import RECEIPT_PREFIX
from core.errors import Malformed, UnknownAuthor, Unauthorised
from core.identity import Identity, IdentityError
from core.receipts import parse_receipt, receipt_body
from runtime import metrics
from runtime.reports import Trust
from store.receipts import OwedEntry
from store.store import Store

log = logging.getLogger("yipanqi.receipts")

RECEIPT_SKEW_MS = 30_000  # as runtime.reports.REPORT_SKEW_MS: a receipt dated ahead would keep a province "answering"
MAX_RECEIPT = 65_536  # 3 x 256 ranges of two 19-digit counters fit with room to spare
MIN_INTERVAL_MS = 1000  # one receipt a second per stream at most, whatever the traffic


class ReceiptSigner(Protocol):
    """What the desk needs of certs.signing.Signer."""
    key_id: str

    def sign_receipt(self, body: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    """A receipt to send towards ``origin``: the exact signed bytes, the key id and the signature."""

    origin: str
    epoch: int
    body: bytes
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Alert:
    """A destination's oldest unreceipted change is older than the alert delay."""

    dest: str
    counter: int
    seq: int
    delta_id: str
    age_s: float
    via: str  # the hub that had custody ("" when no hub acknowledged it)
    owed: int


@dataclass(frozen=True, slots=True)
class Tick:
    alerts: list[Alert]
    resend: list[OwedEntry]  # re-send these deltas now, through the fallback hub if ``via`` is the usual one


def signer_of(identity: str) -> str:
    """The destination name a signing identity may sign receipts as ("44", "national"), or ""."""
    try:
        ident = Identity.parse(identity)
    except IdentityError:
        return ""
    if ident.role == "province" or (ident.role == "hub" and ident.name == "national"):
        return ident.name
    return ""


class ReceiptDesk:
    """One per node (the replica's). Thread-safe: Push and Pull streams call it concurrently."""

    def __init__(self, store: Store, trust: Trust, signer: ReceiptSigner | None, *, alert_s: float,
                 now_ms: Callable[[], int], skew_ms: int = RECEIPT_SKEW_MS) -> None:
        self.store = store
        self.trust = trust  # the replica: its keyring, learning certificates, revocations
        self.signer = signer
        self.alert_ms = int(alert_s * 1000)
        self.heartbeat_ms = max(MIN_INTERVAL_MS, self.alert_ms // 3)
        self.now_ms = now_ms
        self.skew_ms = skew_ms
        self._sent: dict[tuple[str, int], tuple[int, int]] = {}  # stream -> (sent at, inbox updated_ms then)
        self._raised: set[tuple[str, str]] = set()  # (dest, via) alerts already logged and counted
        self._not_after: dict[str, dt.datetime] = {}
        self._learn_at: dict[str, int] = {}  # key id -> when its certificate was last offered to the keyring
        self._lock = threading.Lock()

    # -- the author's side -----------------------------------------------------------------------
    def receive(self, body: bytes, key_id: str, signature: bytes, certificate: bytes | None = None) -> int:
        """Verify a destination's signed receipt and settle what it covers; returns how many owed
        changes it settled. ``certificate``: the signer's certificate (DER), if it travelled with the
        receipt; it is learned only through the keyring's checks. Raises Malformed, BadSignature,
        UnknownAuthor or Unauthorised (naming the key and the reason; nothing is written)."""
        if len(body) > MAX_RECEIPT:
            raise Malformed(f"receipt: over {MAX_RECEIPT} bytes")
        receipt, at_ms = parse_receipt(body)
        self.trust.sync_revocations()
        if certificate is not None and fingerprint_key_id(certificate) != key_id:
            raise Malformed(f"receipt.certificate: is not the certificate of {key_id}")
        if certificate is not None and key_id not in self.trust.keyring and self._may_learn(key_id):
            self.trust.learn([certificate])  # checked against the federation CA and revocations first
        identity = self.trust.keyring.verify(key_id, RECEIPT_PREFIX + body, signature)  # BadSignature, UnknownAuthor
        if signer_of(identity) != receipt.dest:
            raise Unauthorised(f"receipt.dest: names {receipt.dest}, but {identity} signed it")
        now = self.now_ms()
        if dt.datetime.fromtimestamp(now / 1000, dt.timezone.utc) > self._expiry(key_id):
            raise UnknownAuthor(f"receipt: {identity}'s signing certificate {key_id} has expired")
        if receipt.origin != self.store.owner:
            raise Unauthorised(f"receipt.origin: about {receipt.origin}, not {self.store.owner}")
        if at_ms > now + self.skew_ms:
            raise Malformed(f"receipt.at: {(at_ms - now) / 1000:.0f} s in the future "
                            f"(over the {self.skew_ms / 1000:.0f} s allowed)")
        return self.store.take_receipt(receipt, at_ms=at_ms, now_ms=now)

    def _may_learn(self, key_id: str) -> bool:
        """A certificate is offered to the keyring at most once a minute: one the keyring refuses
        (and logs) arriving with every receipt must not flood the log."""
        now = self.now_ms()
        with self._lock:
            if now - self._learn_at.get(key_id, now - 60_001) <= 60_000:
                return False
            if len(self._learn_at) >= 1024:
                self._learn_at.clear()
            self._learn_at[key_id] = now
        return True

    def _expiry(self, key_id: str) -> dt.datetime:
        with self._lock:
            found = self._not_after.get(key_id)
        if found is None:
            found = x509.load_der_x509_certificate(self.trust.keyring.certificate_der(key_id)).not_valid_after_utc
            with self._lock:
                self._not_after[key_id] = found
        return found

    def alive(self, also_alive: Iterable[str] = ()) -> dict[str, bool]:
        """Per destination we hold receipts from: whether it signed a newer receipt within the alert delay."""
        now = self.now_ms()
        out = {d: now - heard <= self.alert_ms for d, (heard, _) in self.store.receipts_heard().items()}
        out.update({d: True for d in also_alive})
        return out

    def alerts(self) -> list[Alert]:
        """Destinations whose oldest unreceipted change is older than the alert delay."""
        now = self.now_ms()
        out = []
        for d, o in self.store.oldest_owed().items():
            if now - o.first_ms >= self.alert_ms:
                out.append(Alert(d, o.n, o.seq, o.delta_id, round((now - o.first_ms) / 1000, 3), o.via, o.owed))
        return out

    def tick(self, *, also_alive: Iterable[str] = (), limit: int = 500) -> Tick:
        """The periodic step: raise alerts (a new one logged and counted once per destination and
        hub) and take what to re-send now, each stamped as re-sent (store.Store.owed_due)."""
        raised = self.alerts()
        with self._lock:
            now_raised = {(a.dest, a.via) for a in raised}
            new = [a for a in raised if (a.dest, a.via) not in self._raised]
            self._raised = now_raised
        for a in new:
            metrics.RECEIPT_ALERTS.labels(destination=a.dest, via=a.via or "none").inc()
            log.warning("no receipt from %s for %d own changes, the oldest (seq %d) for %.0f s; custody: %s",
                        a.dest, a.owed, a.seq, a.age_s, a.via or "no hub acknowledged it")
        resend = self.store.owed_due(now_ms=self.now_ms(), alert_ms=self.alert_ms,
                                     alive=self.alive(also_alive), limit=limit)
        return Tick(raised, resend)

    # -- the destination's side ------------------------------------------------------------------
    def outgoing(self) -> list[SignedReceipt]:
        """The receipts to send now: a stream's when it changed (at most once a second), and each
        stream's at least every third of the alert delay. Marked sent as they are returned (a lost
        one is replaced by the next)."""
        if self.signer is None:
            return []
        now = self.now_ms()
        out = []
        for stream, updated in sorted(self.store.receipt_streams().items()):
            with self._lock:
                last = self._sent.get(stream)
                changed = last is None or updated != last[1]
                if last is not None and not ((changed and now - last[0] >= MIN_INTERVAL_MS)
                                             or now - last[0] >= self.heartbeat_ms):
                    continue
                self._sent[stream] = (now, updated)
            origin, epoch = stream
            body = receipt_body(self.store.receipt_for(origin, epoch), now)
            out.append(SignedReceipt(origin, epoch, body, self.signer.key_id, self.signer.sign_receipt(body)))
        return out


# -- status ----------------------------------------------------------------------------------------

def owed_report(store: Store, now: int, alert_s: float) -> dict[str, dict[str, object]]:
    """``status``'s "receipts": per destination owed anything, its oldest unreceipted change
    (our seq, its counter to that destination, the delta id), its age, the hub that had custody,
    how many are owed, and whether it is past the alert delay. Empty when nothing is owed."""
    out: dict[str, dict[str, object]] = {}
    for d, o in store.oldest_owed().items():
        age = max(0, now - o.first_ms) / 1000
        out[d] = {"oldest_seq": o.seq, "oldest_counter": o.n, "oldest_delta": o.delta_id,
                  "oldest_age_s": round(age, 3), "via": o.via or None, "owed": o.owed, "alert": age >= alert_s}
    return out


def gaps_report(store: Store) -> dict[str, list[dict[str, object]]]:
    """``status``'s "gaps": per origin, each key epoch with counters missing here, as [first, last]
    ranges. Empty when nothing is missing."""
    return {origin: [{"epoch": e, "missing": [list(r) for r in ranges]} for e, ranges in sorted(epochs.items())]
            for origin, epochs in sorted(store.gaps().items())}


__all__ = ["Alert", "ReceiptDesk", "SignedReceipt", "Tick", "gaps_report", "owed_report", "signer_of"]
