"""CA issuance and keyring admission: what gets trusted and what does not."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.ca import (
    CA,
    create_ca,
    fingerprint_key_id,
    issue_identity,
    load_ca,
)
from certs.keyring import Keyring
from core.errors import BadSignature, UnknownAuthor, ValidationError

def now() -> dt.datetime:
    # Read at use, not at import: a long suite may reach this test minutes after collection,
    # after the fixtures issued certificates whose validity starts then.
    return dt.datetime.now(dt.timezone.utc)
OPENSSL = shutil.which("openssl")


def _der(pem_path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca")


@pytest.fixture(scope="module")
def ca(ca_dir: Path) -> CA:
    return create_ca(ca_dir)


@pytest.fixture(scope="module")
def province44(ca: CA, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return issue_identity(ca, "province-44", tmp_path_factory.mktemp("p44"))


def _craft(
    ca: CA,
    *,
    cn: str = "province-44",
    key: object | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    digital_signature: bool = True,
    is_ca: bool = False,
    uri: str | None = None,
) -> bytes:
    """A certificate signed by ``ca`` with chosen defects."""
    key = key or ed25519.Ed25519PrivateKey.generate()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now() - dt.timedelta(days=1))
        .not_valid_after(not_after or now() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature, False, False, False, False, is_ca, False, False, False),
            critical=True,
        )
    )
    if uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
            critical=False,
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# -- CA and issuance ------------------------------------------------------


def test_ca_files_and_modes(ca: CA, ca_dir: Path) -> None:
    assert _mode(ca_dir / "ca.key") == 0o600
    assert ca.cert.subject.rfc4514_string() == "CN=yipanqi federation CA"
    bc = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca
    ku = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert (ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc).days >= 3650
    loaded = load_ca(ca_dir)
    assert loaded.cert == ca.cert


def test_create_ca_refuses_to_overwrite(ca_dir: Path) -> None:
    before = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(FileExistsError):
        create_ca(ca_dir)
    assert (ca_dir / "ca.key").read_bytes() == before


def test_keys_are_0600_even_with_a_permissive_umask(ca: CA, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        other = create_ca(tmp_path / "ca")
        paths = issue_identity(other, "hub-pearl", tmp_path / "hub")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    assert paths.sign_key is not None
    for key in (paths.tls_key, paths.sign_key):
        assert _mode(key) == 0o600
    for cert in (paths.tls_cert, paths.ca_cert):
        assert _mode(cert) == 0o644
    # No temp files left behind.
    assert sorted(p.name for p in paths.dir.iterdir()) == [
        "ca.crt", "sign.crt", "sign.key", "tls.crt", "tls.key",
    ]


def test_issued_tls_certificate(province44) -> None:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(province44.tls_cert.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=province-44"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "province-44"}
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["yipanqi:province-44"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 825
    assert province44.ca_cert.read_bytes() == (province44.dir / "ca.crt").read_bytes()


def test_issued_signing_certificate(province44) -> None:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(province44.sign_cert.read_bytes())
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert cert.subject.rfc4514_string() == "CN=province-44"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not (ku.key_cert_sign or ku.crl_sign or ku.key_encipherment or ku.content_commitment)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["yipanqi:province-44"]


def test_serial_numbers_are_random(ca: CA, tmp_path: Path) -> None:
    a = issue_identity(ca, "province-11", tmp_path / "a")
    b = issue_identity(ca, "province-11", tmp_path / "b")
    serials = {
        x509.load_pem_x509_certificate(p.read_bytes()).serial_number
        for p in (a.tls_cert, a.sign_cert, b.tls_cert, b.sign_cert)  # type: ignore[union-attr]
    }
    assert len(serials) == 4


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_openssl_verifies_issued_certificates(province44) -> None:  # type: ignore[no-untyped-def]
    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OPENSSL, "verify", *args], capture_output=True, text=True, check=False
        )

    ca_file = str(province44.ca_cert)
    for cert in (province44.tls_cert, province44.sign_cert):
        r = verify("-CAfile", ca_file, str(cert))
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip().endswith(": OK")
    for purpose in ("sslserver", "sslclient"):
        r = verify("-purpose", purpose, "-CAfile", ca_file, str(province44.tls_cert))
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_openssl_rejects_certificate_from_another_ca(province44, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    create_ca(tmp_path)
    r = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(tmp_path / "ca.crt"), str(province44.sign_cert)],
        capture_output=True, text=True, check=False,
    )
    assert r.returncode != 0


def test_operators_get_tls_only(ca: CA, tmp_path: Path) -> None:
    paths = issue_identity(ca, "operator-44-admin", tmp_path / "op")
    assert paths.sign_key is None and paths.sign_cert is None
    assert paths.tls_key.exists() and not (tmp_path / "op" / "sign.key").exists()
    with pytest.raises(ValidationError):
        issue_identity(ca, "operator-44-admin", tmp_path / "op2", signing=True)


def test_issue_refuses_bad_identity(ca: CA, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        issue_identity(ca, "province-99", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_fingerprint_key_id() -> None:
    assert fingerprint_key_id(b"abc") == "ed25519:ba7816bf8f01cfea"


# -- keyring admission ----------------------------------------------------


def test_admits_issued_signing_certificate(ca: CA, province44) -> None:  # type: ignore[no-untyped-def]
    ring = Keyring(ca.cert_pem)
    der = _der(province44.sign_cert)
    key_id = ring.add_certificate(der, now=now())
    assert key_id == fingerprint_key_id(der)
    assert ring.identity_of(key_id) == "province-44"
    assert ring.certificate_der(key_id) == der
    assert ring.key_ids() == [key_id]
    # Idempotent.
    assert ring.add_certificate(der, now=now()) == key_id
    assert ring.key_ids() == [key_id]


def test_refuses_certificate_from_another_ca_with_the_same_name(
    province44, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    # Same CN as the real CA, so only the signature check can tell them apart.
    other = create_ca(tmp_path)
    paths = issue_identity(other, "province-44", tmp_path / "p")
    assert other.cert.subject == x509.load_pem_x509_certificate(
        province44.ca_cert.read_bytes()
    ).subject
    ring = Keyring(province44.ca_cert.read_bytes())
    with pytest.raises(UnknownAuthor, match="signature"):
        ring.add_certificate(_der(paths.sign_cert), now=now())
    assert ring.key_ids() == []


def test_refuses_certificate_with_foreign_issuer_name(ca: CA, tmp_path: Path) -> None:
    other = create_ca(tmp_path)
    key = ed25519.Ed25519PrivateKey.generate()
    der = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "province-44")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now() - dt.timedelta(days=1))
        .not_valid_after(now() + dt.timedelta(days=1))
        .sign(other.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(UnknownAuthor, match="issuer"):
        Keyring(ca.cert_pem).add_certificate(der, now=now())


def test_refuses_expired_and_not_yet_valid(ca: CA, province44) -> None:  # type: ignore[no-untyped-def]
    ring = Keyring(ca.cert_pem)
    der = _der(province44.sign_cert)
    cert = x509.load_der_x509_certificate(der)
    with pytest.raises(UnknownAuthor, match="expired"):
        ring.add_certificate(der, now=cert.not_valid_after_utc + dt.timedelta(seconds=1))
    with pytest.raises(UnknownAuthor, match="not valid before"):
        ring.add_certificate(der, now=cert.not_valid_before_utc - dt.timedelta(seconds=1))
    # The boundaries themselves are inside the window.
    ring.add_certificate(der, now=cert.not_valid_after_utc)
    with pytest.raises(ValidationError):
        ring.add_certificate(der, now=dt.datetime.now())  # naive


def test_refuses_tls_certificate(ca: CA, province44) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownAuthor, match="Ed25519"):
        Keyring(ca.cert_pem).add_certificate(_der(province44.tls_cert), now=now())


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"cn": "province-99"}, "identity"),
        ({"cn": "operator-44-admin"}, "operator"),
        ({"digital_signature": False}, "digitalSignature"),
        ({"is_ca": True}, "is a CA"),
        ({"uri": "yipanqi:province-45"}, "disagrees"),
    ],
)
def test_refuses_defective_certificates(ca: CA, kwargs: dict, reason: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(UnknownAuthor, match=reason):
        Keyring(ca.cert_pem).add_certificate(_craft(ca, **kwargs), now=now())


def test_crafted_control_is_admitted(ca: CA) -> None:
    # Guards the parametrised refusals above: without defects, _craft passes.
    ring = Keyring(ca.cert_pem)
    key_id = ring.add_certificate(_craft(ca, uri="yipanqi:province-44"), now=now())
    assert ring.identity_of(key_id) == "province-44"


def test_refuses_garbage() -> None:
    with pytest.raises(ValidationError):
        Keyring(b"not a pem")


# -- revocation and verification ------------------------------------------


def test_revoked_key_is_refused(ca: CA, province44) -> None:  # type: ignore[no-untyped-def]
    der = _der(province44.sign_cert)
    key_id = fingerprint_key_id(der)
    with pytest.raises(UnknownAuthor, match="revoked"):
        Keyring(ca.cert_pem, revoked=[key_id]).add_certificate(der, now=now())


def test_revoked_serial_is_refused(ca: CA, province44) -> None:  # type: ignore[no-untyped-def]
    der = _der(province44.sign_cert)
    serial = x509.load_der_x509_certificate(der).serial_number
    # openssl's colon-separated uppercase form is accepted too.
    openssl_form = ":".join(f"{serial:X}"[i : i + 2] for i in range(0, len(f"{serial:X}"), 2))
    for token in (format(serial, "x"), openssl_form):
        with pytest.raises(UnknownAuthor, match="revoked"):
            Keyring(ca.cert_pem, revoked=[token]).add_certificate(der, now=now())


def test_revoking_an_admitted_key_forgets_it(ca: CA) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    ring = Keyring(ca.cert_pem)
    der = _craft(ca, key=key)
    key_id = ring.add_certificate(der, now=now())
    assert ring.verify(key_id, b"m", key.sign(b"m")) == "province-44"
    ring.revoke(key_id)
    for call in (
        lambda: ring.identity_of(key_id),
        lambda: ring.certificate_der(key_id),
        lambda: ring.verify(key_id, b"m", key.sign(b"m")),
        lambda: ring.add_certificate(der, now=now()),
    ):
        with pytest.raises(UnknownAuthor):
            call()
    assert ring.key_ids() == []


def test_revoke_by_serial_after_admission(ca: CA) -> None:
    ring = Keyring(ca.cert_pem)
    der = _craft(ca)
    key_id = ring.add_certificate(der, now=now())
    ring.revoke(hex(x509.load_der_x509_certificate(der).serial_number))
    with pytest.raises(UnknownAuthor):
        ring.identity_of(key_id)


def test_verify(ca: CA) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    ring = Keyring(ca.cert_pem)
    key_id = ring.add_certificate(_craft(ca, key=key, cn="hub-pearl"), now=now())
    sig = key.sign(b"message")
    assert ring.verify(key_id, b"message", sig) == "hub-pearl"
    with pytest.raises(BadSignature):
        ring.verify(key_id, b"messagf", sig)
    with pytest.raises(BadSignature):
        ring.verify(key_id, b"message", bytes(64))
    with pytest.raises(BadSignature):
        ring.verify(key_id, b"message", sig[:10])
    with pytest.raises(UnknownAuthor):
        ring.verify("ed25519:0000000000000000", b"message", sig)
