"""The federation CA: creating it and issuing node/hub/operator credentials.

How this works: one offline ECDSA P-256 CA ("yipanqi federation CA") signs
two kinds of leaf certificate per identity (see ``core.identity``):

* ``tls.crt``/``tls.key``   ECDSA P-256, EKU serverAuth+clientAuth, for gRPC
                            mTLS. SANs: the hosts the process is dialled at
                            (DNS or IP; clients verify them the standard way),
                            DNS ``<identity>`` and URI ``yipanqi:<identity>``.
* ``sign.crt``/``sign.key`` Ed25519, keyUsage digitalSignature only, for
                            signing record-change batches. Its DER is what
                            ``fingerprint_key_id`` names and what
                            ``certs.keyring.Keyring`` admits.

Operators get only TLS credentials: they administer, they do not author
records. Every directory also gets a copy of ``ca.crt``.

``certs.enrolment`` issues the same certificates for keys that never leave
their own machine (certificate signing requests).

Private keys are written 0600 via ``os.open(..., 0o600)`` on a fresh temp file
then renamed into place, so they are never world-readable, not even between
create and chmod, and a crash never leaves a half-written key. This module
only creates credentials; deciding which ones to trust is the keyring's job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import ValidationError
from core.identity import Identity

CA_COMMON_NAME = "yipanqi federation CA"
CA_DAYS = 3650
# Backdate notBefore so a peer whose clock is a little behind ours still
# accepts a freshly issued certificate.
_CLOCK_SKEW = dt.timedelta(minutes=5)

KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class IssuedPaths:
    dir: Path
    ca_cert: Path
    tls_key: Path
    tls_cert: Path
    sign_key: Path | None  # None for operators
    sign_cert: Path | None


def fingerprint_key_id(cert_der: bytes) -> str:
    """Key id of a signing certificate: a short hash of its exact DER."""
    return "ed25519:" + hashlib.sha256(cert_der).hexdigest()[:16]


# -- files ----------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL on a random name: never follows a planted symlink, never reuses
    # a file someone else could already have open.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        # umask can only have removed bits; make the mode exact.
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def _private_dir(path: Path) -> Path:
    """``path`` as a directory; created 0700 (with any missing parents), whatever the umask. A
    node's or hub's directory holds its keys and, by default, its store (personal data)."""
    if not path.exists():
        _private_dir(path.parent)
        try:
            path.mkdir(mode=0o700)
            os.chmod(path, 0o700)
        except FileExistsError:
            pass
    return path
def write_public(path: Path, data: bytes) -> None:
    """Write a certificate (or another file with no secret) atomically, mode 0644."""
    _write_file(path, data, CERT_MODE)


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    """Write a private key (PKCS#8 PEM) atomically, mode 0600 from the start."""
    _write_file(path, _key_pem(key), KEY_MODE)


def _key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# -- CA -------------------------------------------------------------------


def create_ca(dir: Path, *, now: dt.datetime | None = None) -> CA:
    """Create a new federation CA in ``dir`` (ca.crt, ca.key 0600).

    Refuses to overwrite an existing CA: replacing it silently would orphan
    every credential in the federation.
    """
    dir = _private_dir(Path(dir))
    if (dir / "ca.key").exists() or (dir / "ca.crt").exists():
        raise FileExistsError(f"a CA already exists in {dir}")
    now = now or dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        # path_length=0: the CA signs leaves directly, never intermediates.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a ca.crt without its key is useless, the reverse is fixable.
    _write_file(dir / "ca.key", _key_pem(key), KEY_MODE)
    _write_file(dir / "ca.crt", _cert_pem(cert), CERT_MODE)
    return CA(cert=cert, key=key)


def load_ca(dir: Path) -> CA:
    dir = Path(dir)
    cert = x509.load_pem_x509_certificate((dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((dir / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValidationError("ca.key", "not an ECDSA private key")
    if key.public_key() != cert.public_key():
        raise ValidationError("ca.key", "does not match ca.crt")
    return CA(cert=cert, key=key)


# -- leaves ---------------------------------------------------------------


def _key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_builder(
    ca: CA,
    identity: Identity,
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
    sans: list[x509.GeneralName],
    days: int,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    # Never outlive the CA: a chain that expires mid-way is confusing.
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(identity))])
        )
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )


def _host_names(hosts: Sequence[str], identity: Identity) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in [*hosts, str(identity)]:
        try:
            name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = x509.DNSName(host)
        if name not in names:
            names.append(name)
    names.append(x509.UniformResourceIdentifier(identity.uri))
    return names


def tls_certificate(ca: CA, ident: Identity, public_key: ec.EllipticCurvePublicKey, hosts: Sequence[str],
                    days: int, now: dt.datetime) -> x509.Certificate:
    """The TLS certificate of ``ident`` for ``public_key``, naming ``hosts`` (DNS or IP)."""
    return (
        _leaf_builder(ca, ident, public_key, _host_names(hosts, ident), days, now)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )


def signing_certificate(ca: CA, ident: Identity, public_key: ed25519.Ed25519PublicKey, days: int,
                        now: dt.datetime) -> x509.Certificate:
    """The change-signing certificate of ``ident`` for ``public_key``."""
    return (
        _leaf_builder(ca, ident, public_key, [x509.UniformResourceIdentifier(ident.uri)], days, now)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .sign(ca.key, hashes.SHA256())
    )


def issue_identity(
    ca: CA,
    identity: str,
    out_dir: Path,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 825,
    signing: bool | None = None,
    now: dt.datetime | None = None,
) -> IssuedPaths:
    """Issue TLS (and, for nodes and hubs, signing) credentials into out_dir.

    ``signing=None`` means "yes, unless an operator"; asking for a signing key
    for an operator is refused. Re-issuing replaces files atomically.
    """
    ident = Identity.parse(identity)
    if signing is None:
        signing = ident.role != "operator"
    elif signing and ident.role == "operator":
        raise ValidationError("signing", "operators get TLS credentials only")
    if days < 1:
        raise ValidationError("days", "must be at least 1")
    now = now or dt.datetime.now(dt.timezone.utc)
    out_dir = _private_dir(Path(out_dir))

    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_cert = tls_certificate(ca, ident, tls_key.public_key(), hosts, days, now)
    paths = IssuedPaths(
        dir=out_dir,
        ca_cert=out_dir / "ca.crt",
        tls_key=out_dir / "tls.key",
        tls_cert=out_dir / "tls.crt",
        sign_key=out_dir / "sign.key" if signing else None,
        sign_cert=out_dir / "sign.crt" if signing else None,
    )
    _write_file(paths.ca_cert, ca.cert_pem, CERT_MODE)
    _write_file(paths.tls_key, _key_pem(tls_key), KEY_MODE)
    _write_file(paths.tls_cert, _cert_pem(tls_cert), CERT_MODE)

    if signing:
        assert paths.sign_key is not None and paths.sign_cert is not None
        sign_key = ed25519.Ed25519PrivateKey.generate()
        sign_cert = signing_certificate(ca, ident, sign_key.public_key(), days, now)
        _write_file(paths.sign_key, _key_pem(sign_key), KEY_MODE)
        _write_file(paths.sign_cert, _cert_pem(sign_cert), CERT_MODE)
    return paths
