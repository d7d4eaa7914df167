"""The signed electronic 婚育证明 document: what it holds and how its bytes are formed.

How this works: the holder carries a document, a canonical JSON object

    {"format": "yipanqi-certificate/1",
     "certificate": {cert_no, person_id, holder fields, issuer, issued_on, expires_on, signed_at},
     "signature": {"alg": "ed25519", "key_id": ..., "value": base64},
     "chain": [base64 DER of the issuing node's signing certificate]}

The issuing node signs ``MESSAGE_PREFIX + canonical(certificate)`` with its
Ed25519 signing key (certs.certdoc); the chain carries that key's certificate,
which the federation CA issued, so anyone holding only the CA certificate can
check the document offline. The prefix keeps a document signature from ever
being taken for a batch signature (core.merkle signs another prefix).

The signing certificate is judged at ``signed_at`` (when the document was
signed, UTC), not at the time of checking: a document stays verifiable until
its own expiry after the node's signing certificate has expired or been
rotated (a revoked key still fails at once).

This module is pure: it builds and parses documents and judges their dates
against the ``today`` it is given; signatures and trust are in certs.certdoc.
A refusal is a ``CertificateRefused`` whose ``why`` is one of ``WHYS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Mapping

from core import canonical
from core import fields as f
from core.errors import LocalError, Malformed, ValidationError
from core.person import validate_person

FORMAT = "yipanqi-certificate/1"
MESSAGE_PREFIX = b"yipanqi certificate v1\n"
MAX_DOCUMENT = 8 * 1024  # a QR code holds at most 2,953 bytes; files are allowed some room
HOLDER_FIELDS: tuple[str, ...] = ("name", "id_number", "sex", "birth_date", "marital_status", "children",
                                  "contraception")
WHYS = ("malformed", "altered", "not_federation", "revoked_key", "expired", "not_yet_valid", "revoked",
        "superseded", "unknown")


class CertificateRefused(LocalError):
    """The document does not verify; ``why`` names the category, the message the detail."""

    status = "FAILED_PRECONDITION"

    def __init__(self, why: str, message: str) -> None:
        assert why in WHYS, why
        super().__init__(message)
        self.why = why


@dataclass(frozen=True)
class Document:
    certificate: dict[str, object]  # the signed fields, validated
    signed: bytes  # canonical bytes of ``certificate``: what the signature covers
    key_id: str
    signature: bytes
    chain: tuple[bytes, ...]  # DER certificates, the signing one first

    @property
    def message(self) -> bytes:
        return MESSAGE_PREFIX + self.signed

    @property
    def digest(self) -> str:
        """SHA-256 of the signed bytes: what the certificate record carries."""
        return hashlib.sha256(self.signed).hexdigest()

    @property
    def cert_no(self) -> str:
        return str(self.certificate["cert_no"])

    @property
    def signed_at(self) -> datetime:
        return datetime.strptime(str(self.certificate["signed_at"]), _STAMP).replace(tzinfo=timezone.utc)


_STAMP = "%Y-%m-%dT%H:%M:%SZ"
_STAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def stamp(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime(_STAMP)


def certificate_fields(*, cert_no: str, person_id: str, person: Mapping[str, object], issuer: str,
                       issued_on: date, expires_on: date, signed_at: datetime) -> dict[str, object]:
    """The signed fields, from the holder's person record (only the fields the document carries)."""
    holder = {k: person[k] for k in HOLDER_FIELDS if person.get(k) is not None}
    return {"cert_no": cert_no, "person_id": person_id, **holder, "issuer": issuer,
            "issued_on": issued_on.isoformat(), "expires_on": expires_on.isoformat(), "signed_at": stamp(signed_at)}


def _signed_at(field: str, value: object, today: date) -> str:
    if isinstance(value, str) and _STAMP_RE.fullmatch(value):
        try:
            datetime.strptime(value, _STAMP)
            return value
        except ValueError:
            pass
    raise ValidationError(field, "must be a UTC time YYYY-MM-DDTHH:MM:SSZ")


def signed_bytes(certificate: Mapping[str, object]) -> bytes:
    return canonical.dumps(dict(certificate))


def encode(certificate: Mapping[str, object], key_id: str, signature: bytes, chain: list[bytes]) -> bytes:
    """The whole document's canonical bytes (what the file and the QR code hold)."""
    return canonical.dumps({
        "format": FORMAT,
        "certificate": dict(certificate),
        "signature": {"alg": "ed25519", "key_id": key_id, "value": base64.b64encode(signature).decode()},
        "chain": [base64.b64encode(der).decode() for der in chain],
    })


def _b64(field: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise CertificateRefused("malformed", f"{field}: must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateRefused("malformed", f"{field}: not valid base64") from None


_FIELD_CHECKS: dict[str, f.Checker] = {"cert_no": f.uuid_text, "person_id": f.record_id_text, "issuer": f.province,
                                        "issued_on": f.any_date, "expires_on": f.any_date, "signed_at": _signed_at}


def _check_certificate(cert: object) -> dict[str, object]:
    if not isinstance(cert, dict):
        raise CertificateRefused("malformed", "certificate: must be an object")
    unknown = set(cert) - set(_FIELD_CHECKS) - set(HOLDER_FIELDS)
    if unknown:
        raise CertificateRefused("malformed", f"certificate.{sorted(unknown)[0]}: unknown field")
    out: dict[str, object] = {}
    try:
        for name, check in _FIELD_CHECKS.items():
            if name not in cert:
                raise ValidationError(name, "required field is missing")
            out[name] = check(name, cert[name], date.max)
        holder = {k: cert[k] for k in HOLDER_FIELDS if k in cert}
        for required in ("name", "id_number", "sex", "birth_date"):
            if required not in holder:
                raise ValidationError(required, "required field is missing")
        # The person kind's own rules (id number checksum, birth date and sex agree with it).
        out.update(validate_person(holder, today=date.max, partial=True))
    except ValidationError as err:
        raise CertificateRefused("malformed", f"certificate.{err.field}: {err.reason}") from None
    if out != cert:  # a document in another spelling than the one that was signed
        raise CertificateRefused("malformed", "certificate: fields are not in their normal form")
    if str(out["expires_on"]) <= str(out["issued_on"]):
        raise CertificateRefused("malformed", "certificate.expires_on: not after issued_on")
    # issued_on is the issuing node's local date; signed_at is UTC (China is UTC+8).
    signed_on = datetime.strptime(str(out["signed_at"]), _STAMP).date()
    if abs((signed_on - date.fromisoformat(str(out["issued_on"]))).days) > 1:
        raise CertificateRefused("malformed", "certificate.signed_at: not on issued_on")
    return out


def decode(data: bytes | str) -> Document:
    """Parse a document (file contents or decoded QR text); CertificateRefused('malformed') if it is not one."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raw = raw.strip()
    if len(raw) > MAX_DOCUMENT:
        raise CertificateRefused("malformed", f"document: {len(raw)} bytes is over the {MAX_DOCUMENT}-byte limit")
    try:
        obj = canonical.loads(raw)
    except (Malformed, ValueError, UnicodeDecodeError) as err:
        raise CertificateRefused("malformed", f"document: not a JSON certificate document ({err})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CertificateRefused("malformed", f"format: not a {FORMAT} document")
    extra = set(obj) - {"format", "certificate", "signature", "chain"}
    if extra:
        raise CertificateRefused("malformed", f"{sorted(extra)[0]}: unknown key")
    sig = obj.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != "ed25519" or not isinstance(sig.get("key_id"), str):
        raise CertificateRefused("malformed", "signature: must be {alg: ed25519, key_id, value}")
    chain = obj.get("chain")
    if not isinstance(chain, list) or not 1 <= len(chain) <= 4:
        raise CertificateRefused("malformed", "chain: must list 1..4 certificates")
    cert = _check_certificate(obj.get("certificate"))
    return Document(cert, signed_bytes(cert), sig["key_id"], _b64("signature.value", sig.get("value")),
                    tuple(_b64(f"chain[{i}]", c) for i, c in enumerate(chain)))


CLOCK_SLACK = timedelta(minutes=10)


def check_dates(doc: Document, now: datetime) -> None:
    """Refuse a document outside its validity at ``now`` (timezone-aware)."""
    issued, expires = str(doc.certificate["issued_on"]), str(doc.certificate["expires_on"])
    today = now.date()
    if today.isoformat() < issued or doc.signed_at > now + CLOCK_SLACK:
        raise CertificateRefused("not_yet_valid", f"not valid before {issued}")
    if today.isoformat() > expires:
        raise CertificateRefused("expired", f"expired on {expires}")
