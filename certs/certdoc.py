"""Signing and verifying certificate documents (core.certdoc) with federation keys.

How this works: ``issue`` signs a document's certificate fields with the
issuing node's Ed25519 signing key and attaches that key's certificate.
``verify`` needs nothing but the federation CA certificate (and, if the
verifier has one, the federation's revocation list): the signing certificate
in the document's chain must have been issued by that CA, still be valid and
not be revoked; it must have been valid when the document was signed
(``signed_at``: a document outlives the signing certificate's own expiry or
rotation, not its revocation); its key must verify the signature over the exact
signed bytes; it must speak for the province named as issuer; and today must be
within the document's validity. No network, no database: it runs offline in
about a millisecond (two signature checks and a certificate parse).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from certs.ca import fingerprint_key_id
from certs.keyring import Keyring
from certs.signing import Signer
from core import certdoc
from core.certdoc import CertificateRefused, Document
from core.errors import BadSignature, UnknownAuthor, ValidationError
from core.identity import Identity
from core.provinces import PROVINCES


def issue(signer: Signer, certificate: dict[str, object]) -> bytes:
    """The signed document for ``certificate`` (core.certdoc.certificate_fields), as bytes."""
    signature = signer.sign_certificate(certdoc.signed_bytes(certificate))
    return certdoc.encode(certificate, signer.key_id, signature, [signer.cert_der])


@dataclass(frozen=True)
class Verified:
    document: Document
    signer: str  # the identity whose key signed it, e.g. province-65

    def line(self) -> str:
        """One line for the operator: holder, issuing province, validity (no ID number)."""
        c = self.document.certificate
        issuer = str(c["issuer"])
        return (f"valid: certificate {c['cert_no']} of {c['name']}, issued by province {issuer} "
                f"({PROVINCES.get(issuer, '?')}), valid {c['issued_on']} to {c['expires_on']}")


def verify(data: bytes | str, ca_pem: bytes, *, revoked: Iterable[str] = (),
           now: dt.datetime | None = None) -> Verified:
    """Check a document offline; CertificateRefused with its ``why`` if it does not verify."""
    now = now or dt.datetime.now(dt.timezone.utc)
    doc = certdoc.decode(data)
    try:
        keyring = Keyring(ca_pem, revoked=revoked)
    except ValidationError as err:
        raise CertificateRefused("unknown", f"the CA certificate given is not usable: {err.reason}") from None
    signing = doc.chain[0]
    if fingerprint_key_id(signing) != doc.key_id:
        raise CertificateRefused("altered", f"signature.key_id {doc.key_id} is not the key of the certificate "
                                            "in the chain")
    try:
        keyring.add_certificate(signing, now=doc.signed_at)
    except UnknownAuthor as err:
        text = str(err)
        if text.endswith(": revoked"):
            raise CertificateRefused("revoked_key", f"signed by a revoked key ({doc.key_id})") from None
        raise CertificateRefused("not_federation", f"not from the federation CA: {text}") from None
    try:
        identity = keyring.verify(doc.key_id, doc.message, doc.signature)
    except BadSignature:
        raise CertificateRefused("altered", "the document was altered: its signature does not verify") from None
    ident = Identity.parse(identity)
    if ident.role != "province" or ident.name != doc.certificate["issuer"]:
        raise CertificateRefused("altered", f"issuer {doc.certificate['issuer']} but signed by {identity}")
    certdoc.check_dates(doc, now)
    return Verified(doc, identity)
