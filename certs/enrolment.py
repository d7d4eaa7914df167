"""Enrolment: private keys made where they are used, certificates signed from requests.

How this works. ``new_keys`` generates an identity's private keys in its own
directory (0600: the TLS key, ECDSA P-256, and for nodes and hubs the Ed25519
signing key) and returns a certificate signing request (PKCS#10, PEM) for each;
only the requests travel to the CA, the keys never leave the directory. At the
CA, ``sign_request`` checks a request before it signs: it parses, its
self-signature verifies (whoever sent it holds the key), its subject is the
identity being enrolled and its key is the right kind. The certificate it
issues is the one ``certs.ca.issue_identity`` would issue, with the hosts the
CA records for the identity: nothing but the public key and the subject is
taken from the request. Back on the requester's machine, ``check_certificate``
makes sure a returned certificate was issued by the CA and is for its own key
before it is installed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from certs.ca import CA, signing_certificate, tls_certificate, write_private_key
from core.errors import ValidationError
from core.identity import Identity

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def split_address(address: str, field: str = "address") -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port), refusing anything else."""
    host, sep, port = address.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError(field, f"{address!r} is not host:port")
    valid_host(host, field)
    if ":" in host and not bracketed:
        raise ValidationError(field, f"{address!r}: write an IPv6 address in brackets, [{host}]:{port}")
    return host, int(port)


def valid_host(host: str, field: str = "address") -> str:
    """An IP address or a DNS name (RFC 1123 labels), as it may appear in a certificate."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValidationError(field, f"{host!r} is neither an IP address nor a DNS name")
    return host


def new_keys(identity: str, dir: Path) -> dict[str, bytes]:
    """Make ``identity``'s private keys in ``dir``; return {"tls": csr, "sign": csr} (PEM).

    Operators get a TLS key only. Refuses to overwrite a key: replacing one
    that is already certified would strand its certificate.
    """
    ident = Identity.parse(identity)
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    kinds = ["tls"] if ident.role == "operator" else ["tls", "sign"]
    for kind in kinds:
        if (dir / f"{kind}.key").exists():
            raise FileExistsError(f"{dir / f'{kind}.key'} already exists")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(ident))])
    out: dict[str, bytes] = {}
    for kind in kinds:
        key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        if kind == "tls":
            key = ec.generate_private_key(ec.SECP256R1())
            csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, None)
        write_private_key(dir / f"{kind}.key", key)
        out[kind] = csr.public_bytes(serialization.Encoding.PEM)
    return out


def sign_request(ca: CA, identity: str, kind: str, csr_pem: str | bytes, *, hosts: Sequence[str] = (),
                 days: int = 825, now: dt.datetime | None = None) -> bytes:
    """The certificate (PEM) for a checked request: ``kind`` is "tls" or "sign"."""
    ident = Identity.parse(identity)
    field = f"{identity}.{kind}_csr"
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    except ValueError:
        raise ValidationError(field, "not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise ValidationError(field, "its signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != str(ident):
        asked = names[0].value if names else "nothing"
        raise ValidationError(field, f"the request is for {asked!r}, not {identity}")
    key = csr.public_key()
    now = now or dt.datetime.now(dt.timezone.utc)
    if kind == "tls":
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValidationError(field, "a TLS key must be ECDSA P-256")
        for host in hosts:
            valid_host(host)
        cert = tls_certificate(ca, ident, key, hosts or ("localhost", "127.0.0.1"), days, now)
    elif kind == "sign":
        if ident.role == "operator":
            raise ValidationError(field, "operators get TLS credentials only")
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValidationError(field, "a signing key must be Ed25519")
        cert = signing_certificate(ca, ident, key, days, now)
    else:
        raise ValidationError("kind", f"{kind!r} is not tls or sign")
    return cert.public_bytes(serialization.Encoding.PEM)


def check_certificate(ca_pem: bytes, cert_pem: bytes, key_path: Path, identity: str, field: str) -> None:
    """Refuse a certificate that the CA did not issue, that is not ``identity``'s, or that is
    not for the private key in ``key_path``."""
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValidationError(field, "not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValidationError(field, f"not issued by the federation CA ({type(exc).__name__})") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != identity:
        raise ValidationError(field, f"the certificate is not {identity}'s")
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, raw)
            != cert.public_key().public_bytes(serialization.Encoding.DER, raw)):
        raise ValidationError(field, f"the certificate is not for the key in {key_path}")


def ca_fingerprint(ca_pem: bytes) -> str:
    """SHA-256 of the CA certificate, as openssl x509 -fingerprint -sha256 prints it."""
    digest = x509.load_pem_x509_certificate(ca_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)
