"""Reports peers send about themselves (Push ``report``): signed by the province they describe.

How this works. A node tells its hub its figures every few seconds. It signs them itself
(``sign``): the report body is canonical JSON naming the node's identity and its own report
time ``at_ms``; the node signs those exact bytes with its signing key (certs.signing,
REPORT_PREFIX), and the body travels as that very text, with the key id, the signature and
the signing certificate. A regional hub keeps each node's latest signed report verbatim and
passes the list up with its own figures (``hub_report``); it cannot author or alter one.

Whoever receives a report (``Desk.take``) keeps a node's figures only if the body verifies by
the current signing certificate of the province it names (issued by the federation CA, not
revoked, not expired now), fits the schema below (known keys only, each of its type and
range, at most ``MAX_ORIGINS`` delivery rows), and its ``at_ms`` is neither older than the
last one accepted from that province (no replay; the very same report again is a no-op) nor
more than ``REPORT_SKEW_MS`` ahead of our clock. Anything else is refused with the reason
(``BadReport``: keys and reasons, never values), counted against the TLS peer that sent it,
and the stream goes on. A hub's own figures are its word (its TLS identity), kept apart as
its claim. What status then reads is always of the right type and signed by its subject.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from cryptography import x509

from certs.ca import fingerprint_key_id
from certs.signing import REPORT_PREFIX
from core.errors import BadSignature, UnknownAuthor
from core.identity import PROVINCE_CODES, Identity
from runtime import clock

log = logging.getLogger("yipanqi.reports")

MAX_REPORT = 1024 * 1024
MAX_ORIGINS = 64
MAX_NODES = 40
MAX_INT = 2**63 - 1
MAX_CERTIFICATE = 16_384
# How far ahead of the receiver's clock a report time may be (clocks differ a little). A report
# time further ahead would keep a province "up" after it stopped, so it is refused.
REPORT_SKEW_MS = 30_000


class BadReport(ValueError):
    """A report that does not fit the schema; the message names the key and the reason."""


def _count(key: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise BadReport(f"{key}: must be an integer >= 0")
    return value


def _seconds(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= 10**9:
        raise BadReport(f"{key}: must be a number of seconds >= 0 or null")
    return value


def _province_identity(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("province-") or value[9:] not in PROVINCE_CODES:
        raise BadReport(f"{key}: {value!r:.40} is not a province identity")
    return value


def _delivery(key: str, value: Any) -> dict[str, dict[str, float | int]]:
    if not isinstance(value, dict) or len(value) > MAX_ORIGINS:
        raise BadReport(f"{key}: must be an object of at most {MAX_ORIGINS} origins")
    out = {}
    for origin, row in value.items():
        _province_identity(f"{key} origin", origin)
        if not isinstance(row, dict):
            raise BadReport(f"{key}.{origin}: must be an object")
        out[origin] = {"changes": _count(f"{key}.{origin}.changes", row.get("changes", 0)),
                       "p50_s": _seconds(f"{key}.{origin}.p50_s", row.get("p50_s")) or 0.0,
                       "p95_s": _seconds(f"{key}.{origin}.p95_s", row.get("p95_s")) or 0.0}
    return out


_Check = Callable[[str, Any], Any]
NODE_SCHEMA: dict[str, _Check] = {
    "at_ms": _count, "records": _count, "last_seq": _count, "acked_seq": _count, "backlog": _count,
    "oldest_age_s": _seconds, "max_lag_s": _seconds, "conflicts": _count, "quarantined": _count,
    "delivery": _delivery,
}
HUB_SCHEMA: dict[str, _Check] = {"at_ms": _count, "log_lsn": _count, "quarantined": _count}


def _fit(doc: Any, schema: dict[str, _Check], where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BadReport(f"{where}: must be a JSON object")
    return {key: check(f"{where}{key}", doc[key]) for key, check in schema.items() if key in doc}


def node_figures(doc: Any, where: str = "") -> dict[str, Any]:
    """A node's figures as the schema allows them (unknown keys dropped); BadReport names the key."""
    return _fit(doc, NODE_SCHEMA, where)


def canonical(doc: dict[str, Any]) -> str:
    """The one text of a report body that is signed and travels."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class ReportSigner(Protocol):
    identity: str
    key_id: str
    cert_der: bytes

    def sign_report(self, body: bytes) -> bytes: ...


def sign(signer: ReportSigner, figures: dict[str, Any]) -> dict[str, Any]:
    """A node's report as it travels: {"signed": {body, key_id, signature, certificate}}.
    Figures the node cannot give right now (its store is down) are left out, not sent as null."""
    body = canonical({**{k: v for k, v in figures.items() if v is not None}, "identity": signer.identity})
    return {"signed": {"body": body, "key_id": signer.key_id,
                       "signature": base64.b64encode(signer.sign_report(body.encode())).decode(),
                       "certificate": base64.b64encode(signer.cert_der).decode()}}


def _b64(key: str, value: Any, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise BadReport(f"{key}: must be base64 text of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadReport(f"{key}: not base64") from None


def parse(text: str, *, from_hub: bool) -> tuple[dict[str, Any], list[Any]]:
    """(the sender's own figures, the signed reports it carries: a node its own, a hub its nodes').

    Only the outer shape is checked here; each signed report is checked by ``Desk``.
    Raises BadReport naming the key and the reason."""
    if len(text) > MAX_REPORT:
        raise BadReport(f"report: {len(text)} characters is over the {MAX_REPORT}-character limit")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise BadReport("report: not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadReport("report: must be a JSON object")
    if not from_hub:
        if "signed" not in doc:
            raise BadReport("signed: missing (a node's report must be signed by the node)")
        return {}, [doc["signed"]]
    own = _fit(doc, HUB_SCHEMA, "")
    nodes = doc.get("nodes", [])
    if not isinstance(nodes, list) or len(nodes) > MAX_NODES:
        raise BadReport(f"nodes: must be a list of at most {MAX_NODES} signed node reports")
    return own, nodes


@dataclass(frozen=True)
class Accepted:
    """A province's latest verified report."""
    identity: str
    at_ms: int
    signature: bytes
    figures: dict[str, Any]  # schema-checked body
    envelope: dict[str, Any]  # as received: relayed upward unchanged
    via: str  # the TLS peer that brought it
    received_ms: int


class Trust(Protocol):
    """What ``Desk`` needs of runtime.replica.Replica: its keyring, learning certificates, revocations."""
    keyring: Any

    def learn(self, certificates: Any) -> None: ...

    def sync_revocations(self) -> None: ...


class Desk:
    """Receives reports (see the module header); thread-safe (one Push stream per peer)."""

    def __init__(self, trust: Trust, *, now_ms: Callable[[], int] = clock.now_ms,
                 skew_ms: int = REPORT_SKEW_MS) -> None:
        self.trust = trust
        self.now_ms = now_ms
        self.skew_ms = skew_ms
        self.latest: dict[str, Accepted] = {}  # province identity -> its latest accepted report
        self.claims: dict[str, dict[str, Any]] = {}  # hub identity -> its own figures (its claim)
        self.refused: dict[str, int] = {}  # TLS peer -> reports refused, for status
        self._log_at: dict[str, float] = {}
        self._not_after: dict[str, dt.datetime] = {}
        self._learn_at: dict[str, float] = {}  # key id -> when its certificate was last offered to the keyring
        self._lock = threading.Lock()

    def take(self, who: str, text: str) -> list[str]:
        """Keep what verifies in one Push report from TLS peer ``who``; the reasons for the rest."""
        is_hub = Identity.parse(who).role == "hub"
        try:
            own, envelopes = parse(text, from_hub=is_hub)
        except BadReport as err:
            self._refuse(who, str(err))
            return [str(err)]
        if is_hub:
            with self._lock:
                self.claims[who] = {**own, "received_ms": self.now_ms()}
        problems = []
        for index, envelope in enumerate(envelopes):
            try:
                self._take_one(who, envelope)
            except BadReport as err:
                where = f"nodes[{index}]." if is_hub else ""
                problems.append(f"{where}{err}")
                self._refuse(who, problems[-1])
        return problems

    def _refuse(self, who: str, reason: str) -> None:
        with self._lock:
            count = self.refused[who] = self.refused.get(who, 0) + 1
            now = time.monotonic()
            if now - self._log_at.get(who, -1e9) < 60:  # one line a minute per peer
                return
            self._log_at[who] = now
        log.warning("refused a report from %s: %s (%d so far)", who, reason, count)

    def _take_one(self, who: str, envelope: Any) -> None:
        if not isinstance(envelope, dict):
            raise BadReport("signed: must be an object")
        body = envelope.get("body")
        if not isinstance(body, str) or len(body) > MAX_REPORT:
            raise BadReport("signed.body: must be the report text")
        key_id = envelope.get("key_id")
        if not isinstance(key_id, str) or len(key_id) > 64:
            raise BadReport("signed.key_id: must be a key id")
        signature = _b64("signed.signature", envelope.get("signature"), 64)
        self.trust.sync_revocations()
        if "certificate" in envelope:
            der = _b64("signed.certificate", envelope["certificate"], MAX_CERTIFICATE)
            if fingerprint_key_id(der) != key_id:
                raise BadReport("signed.certificate: is not the certificate of signed.key_id")
            if key_id not in self.trust.keyring and self._may_learn(key_id):
                self.trust.learn([der])  # checked against the federation CA and revocations first
        try:
            data = body.encode()
            identity = self.trust.keyring.verify(key_id, REPORT_PREFIX + data, signature)
        except UnicodeEncodeError:
            raise BadReport("signed.body: not valid UTF-8 text") from None
        except (BadSignature, UnknownAuthor) as err:
            raise BadReport(f"signed.signature: {err}") from None
        if Identity.parse(identity).role != "province":
            raise BadReport(f"signed.key_id: signs for {identity}, not a province")
        now = self.now_ms()
        if dt.datetime.fromtimestamp(now / 1000, dt.timezone.utc) > self._expiry(key_id):
            raise BadReport(f"signed.key_id: {identity}'s signing certificate {key_id} has expired")
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise BadReport("signed.body: not valid JSON") from None
        if not isinstance(doc, dict):
            raise BadReport("signed.body: must be a JSON object")
        if doc.get("identity") != identity:
            raise BadReport(f"signed.body.identity: is not {identity}, whose key signed it")
        figures = node_figures(doc, "signed.body.")
        if "at_ms" not in figures:
            raise BadReport("signed.body.at_ms: missing")
        at = figures["at_ms"]
        if at > now + self.skew_ms:
            raise BadReport(f"signed.body.at_ms: {(at - now) / 1000:.0f} s in the future "
                            f"(over the {self.skew_ms / 1000:.0f} s allowed)")
        with self._lock:
            last = self.latest.get(identity)
            if last is not None:
                if at < last.at_ms:
                    raise BadReport(f"signed.body.at_ms: older than {identity}'s last accepted report (a replay)")
                if at == last.at_ms:
                    if signature == last.signature:
                        return  # the same report again (a hub relays the latest until a newer one comes)
                    raise BadReport(f"signed.body.at_ms: {identity} already reported at that time")
            kept = {k: envelope[k] for k in ("body", "key_id", "signature", "certificate") if k in envelope}
            self.latest[identity] = Accepted(identity, at, signature, figures, kept, who, now)

    def _may_learn(self, key_id: str) -> bool:
        """A certificate the keyring refused (and logged) is offered to it again at most once a
        minute: a report every few seconds carrying a revoked one must not flood the log."""
        now = time.monotonic()
        with self._lock:
            if now - self._learn_at.get(key_id, -1e9) < 60:
                return False
            if len(self._learn_at) >= 1024:
                self._learn_at.clear()
            self._learn_at[key_id] = now
        return True

    def _expiry(self, key_id: str) -> dt.datetime:
        expiry = self._not_after.get(key_id)
        if expiry is None:
            cert = x509.load_der_x509_certificate(self.trust.keyring.certificate_der(key_id))
            expiry = self._not_after[key_id] = cert.not_valid_after_utc
        return expiry

    def rows(self) -> dict[str, dict[str, Any]]:
        """Each province's latest verified figures, with "identity", "via" and "received_ms"."""
        with self._lock:
            return {i: {**a.figures, "identity": i, "via": a.via, "received_ms": a.received_ms}
                    for i, a in self.latest.items()}

    def envelopes(self) -> list[dict[str, Any]]:
        """The latest signed report of each province, as received: what a hub relays upward."""
        with self._lock:
            return [a.envelope for _, a in sorted(self.latest.items())]

    def refused_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.refused)

    def hub_claims(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {who: dict(claim) for who, claim in sorted(self.claims.items())}
