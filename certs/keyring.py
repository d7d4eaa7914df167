"""Trust: which Ed25519 signing keys speak for which federation identity.

How this works: a ``Keyring`` is seeded with the federation CA certificate
and admits signing certificates one at a time (``add_certificate``). A
certificate is admitted only if it was issued by the federation CA (issuer
name matches *and* the CA key's signature verifies), is within its validity
window at the caller-supplied ``now``, carries an Ed25519 key usable for
digital signatures, is not itself a CA, names a non-operator identity in its
CN (operators never author records) and, if it has a ``yipanqi:`` SAN URI,
that URI agrees with the CN. Admitted keys are indexed by
``fingerprint_key_id(cert_der)``.

Revocation takes key ids (``ed25519:...``) or certificate serial numbers in
hex (any case, optional ``0x`` or ``:`` separators, as openssl prints them);
a revoked key is refused on add and forgotten if already admitted.

Validity is checked at admission only: ``verify`` has no clock, so that a
record signed while its key was valid stays verifiable when replayed later.
Callers that want expiry to bite rebuild or revoke.

This module knows nothing about Merkle batches (``certs.signing``) or TLS
(the transport); it answers "is this signature by that key valid, and whose
key is it?". Thread-safe: admission and revocation may race verification.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from certs.ca import fingerprint_key_id
from core.errors import BadSignature, UnknownAuthor, ValidationError
from core.identity import URI_SCHEME, Identity


_Refuse = Callable[[str], UnknownAuthor]


@dataclass(frozen=True)
class _Entry:
    identity: str
    serial: str
    public_key: ed25519.Ed25519PublicKey
    cert_der: bytes


def _norm_revocation(token: str) -> str:
    token = token.strip()
    if token.startswith("ed25519:"):
        return token.lower()
    hex_ = token.lower().removeprefix("0x").replace(":", "")
    try:
        int(hex_, 16)
    except ValueError:
        raise ValidationError(
            "revoked", f"{token!r} is neither a key id nor a hex serial"
        ) from None
    return _serial_hex(int(hex_, 16))


def _serial_hex(serial: int) -> str:
    return format(serial, "x")


class Keyring:
    def __init__(self, ca_cert_pem: bytes, *, revoked: Iterable[str] = ()) -> None:
        try:
            self._ca = x509.load_pem_x509_certificate(ca_cert_pem)
        except ValueError as e:
            raise ValidationError("ca_cert", f"not a PEM certificate: {e}") from None
        try:
            bc = self._ca.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.value.ca:
            raise ValidationError("ca_cert", "not a CA certificate")
        self._lock = threading.RLock()
        self._revoked: set[str] = {_norm_revocation(r) for r in revoked}
        self._entries: dict[str, _Entry] = {}

    # -- admission --------------------------------------------------------

    def add_certificate(self, cert_der: bytes, *, now: dt.datetime) -> str:
        """Admit a signing certificate; returns its key id. Idempotent."""
        if now.tzinfo is None:
            raise ValidationError("now", "must be timezone-aware")
        key_id = fingerprint_key_id(cert_der)

        def refuse(reason: str) -> UnknownAuthor:
            return UnknownAuthor(f"certificate {key_id} refused: {reason}")

        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise refuse("not a DER X.509 certificate") from None
        serial = _serial_hex(cert.serial_number)

        # Issuer name first for a precise reason; the signature is what counts.
        if cert.issuer != self._ca.subject:
            raise refuse(f"issuer {cert.issuer.rfc4514_string()!r} is not the federation CA")
        try:
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            raise refuse("CA signature does not verify") from None

        if now < cert.not_valid_before_utc:
            raise refuse(f"not valid before {cert.not_valid_before_utc.isoformat()}")
        if now > cert.not_valid_after_utc:
            raise refuse(f"expired at {cert.not_valid_after_utc.isoformat()}")

        public_key = cert.public_key()
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise refuse("public key is not Ed25519")
        self._check_usage(cert, refuse)

        identity = self._identity(cert, refuse)

        with self._lock:
            if key_id in self._revoked or serial in self._revoked:
                raise refuse("revoked")
            self._entries[key_id] = _Entry(identity, serial, public_key, cert_der)
        return key_id

    @staticmethod
    def _check_usage(cert: x509.Certificate, refuse: _Refuse) -> None:
        exts = cert.extensions
        try:
            if exts.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise refuse("is a CA certificate")
        except x509.ExtensionNotFound:
            pass
        try:
            ku = exts.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise refuse("no keyUsage extension") from None
        if not ku.digital_signature:
            raise refuse("keyUsage lacks digitalSignature")

    @staticmethod
    def _identity(cert: x509.Certificate, refuse: _Refuse) -> str:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1:
            raise refuse("subject must have exactly one CN")
        cn = cns[0].value
        if not isinstance(cn, str):
            raise refuse("CN is not a string")
        try:
            ident = Identity.parse(cn)
        except ValidationError as e:
            raise refuse(f"CN {cn!r} is not a federation identity ({e.reason})") from None
        if ident.role == "operator":
            raise refuse(f"{ident} is an operator; operators do not sign records")
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        ours = [u for u in uris if u.startswith(URI_SCHEME + ":")]
        if any(u != ident.uri for u in ours):
            raise refuse(f"SAN URI {ours} disagrees with CN {cn!r}")
        return str(ident)

    # -- lookups ----------------------------------------------------------

    def _entry(self, key_id: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                raise UnknownAuthor(f"no trusted signing certificate for {key_id}")
            return entry

    def identity_of(self, key_id: str) -> str:
        return self._entry(key_id).identity

    def certificate_der(self, key_id: str) -> bytes:
        return self._entry(key_id).cert_der

    def key_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    def __contains__(self, key_id: object) -> bool:
        with self._lock:
            return key_id in self._entries

    def revoke(self, key_id_or_serial: str) -> None:
        token = _norm_revocation(key_id_or_serial)
        with self._lock:
            self._revoked.add(token)
            for key_id, entry in list(self._entries.items()):
                if token in (key_id, entry.serial):
                    del self._entries[key_id]

    def verify(self, key_id: str, message: bytes, signature: bytes) -> str:
        """Check ``signature`` over ``message`` by ``key_id``; return its identity."""
        entry = self._entry(key_id)
        try:
            entry.public_key.verify(signature, message)
        except (InvalidSignature, TypeError, ValueError):
            raise BadSignature(f"signature by {key_id} does not verify") from None
        return entry.identity
