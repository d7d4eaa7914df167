"""Batch sealing and verification over exact bytes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from certs.ca import CA, create_ca, fingerprint_key_id, issue_identity
from certs.keyring import Keyring
from certs.signing import Signer, Verifier
from core.errors import BadSignature, UnknownAuthor, ValidationError
from core.merkle import Seal, signed_message

def now() -> dt.datetime:
    # Read at use, not at import: a long suite may reach this test minutes after collection,
    # after the fixtures issued certificates whose validity starts then.
    return dt.datetime.now(dt.timezone.utc)

# Known answer: other implementations must reproduce these exactly.
KAT_SEED = bytes(range(32))
KAT_PUBLIC_KEY = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
KAT_BODIES = [b"change-0", b"change-1", b"change-2", b"change-3", b"change-4"]
KAT_ROOT = "fc9bb2a708b21f2168ae36246e1f9f9ff6e32f0733975b4f0fdd9ae75aed4e85"
KAT_SIGNATURE = (
    "35f25fa7db7c12c66e3061dbf33c389c550b46de65e9d0066c7a429ba122156b"
    "6d3237c91736003cbec6dc4dc7ac043477b4a1921c131a85fba608c8a500950c"
)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return create_ca(tmp_path_factory.mktemp("ca"))


def _cert_for(ca: CA, key: ed25519.Ed25519PrivateKey, cn: str = "province-44") -> bytes:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - dt.timedelta(days=1))
        .not_valid_after(now() + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@pytest.fixture(scope="module")
def signer(ca: CA) -> Signer:
    key = ed25519.Ed25519PrivateKey.generate()
    return Signer(key, _cert_for(ca, key))


class CountingKeyring(Keyring):
    """Counts Ed25519 verifications, to observe the verifier's cache."""

    calls = 0

    def verify(self, key_id: str, message: bytes, signature: bytes) -> str:
        self.calls += 1
        return super().verify(key_id, message, signature)


@pytest.fixture
def keyring(ca: CA, signer: Signer) -> CountingKeyring:
    ring = CountingKeyring(ca.cert_pem)
    ring.add_certificate(signer.cert_der, now=now())
    return ring


def test_known_answer(ca: CA) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(KAT_SEED)
    raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw.hex() == KAT_PUBLIC_KEY
    seals = Signer(key, _cert_for(ca, key)).seal_batch(KAT_BODIES)
    assert {s.signature.hex() for s in seals} == {KAT_SIGNATURE}
    for body, seal in zip(KAT_BODIES, seals):
        assert seal.root_for(body).hex() == KAT_ROOT
    # The signature is over the prefixed root, nothing else.
    key.public_key().verify(seals[0].signature, signed_message(bytes.fromhex(KAT_ROOT)))


def test_one_signature_per_batch(signer: Signer) -> None:
    bodies = [f"body-{i}".encode() for i in range(7)]
    seals = signer.seal_batch(bodies)
    assert [s.index for s in seals] == list(range(7))
    assert {s.size for s in seals} == {7}
    assert len({s.signature for s in seals}) == 1
    assert {s.key_id for s in seals} == {signer.key_id}
    assert signer.seal_batch([]) == []


def test_signer_properties_and_load(ca: CA, tmp_path: Path) -> None:
    paths = issue_identity(ca, "hub-yangtze", tmp_path)
    assert paths.sign_key is not None and paths.sign_cert is not None
    signer = Signer.load(paths.sign_key, paths.sign_cert)
    assert signer.identity == "hub-yangtze"
    assert signer.key_id == fingerprint_key_id(signer.cert_der)
    ring = Keyring(ca.cert_pem)
    ring.add_certificate(signer.cert_der, now=now())
    (seal,) = signer.seal_batch([b"x"])
    assert Verifier(ring).verify(b"x", seal) == "hub-yangtze"


def test_signer_refuses_mismatched_key(ca: CA) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ValidationError):
        Signer(ed25519.Ed25519PrivateKey.generate(), _cert_for(ca, key))


def test_every_split_change_verifies_with_one_ed25519_call(
    signer: Signer, keyring: CountingKeyring
) -> None:
    bodies = [f"body-{i}".encode() for i in range(9)]
    seals = signer.seal_batch(bodies)
    verifier = Verifier(keyring)
    # Routing may deliver them in any order.
    for body, seal in reversed(list(zip(bodies, seals))):
        assert verifier.verify(body, seal) == "province-44"
    assert keyring.calls == 1


def test_tampered_body_is_bad_signature(signer: Signer, keyring: Keyring) -> None:
    bodies = [b"alpha", b"beta", b"gamma"]
    seals = signer.seal_batch(bodies)
    verifier = Verifier(keyring)
    verifier.verify(b"beta", seals[1])  # warm the cache for this root
    with pytest.raises(BadSignature):
        verifier.verify(b"betA", seals[1])
    with pytest.raises(BadSignature):
        verifier.verify(b"beta ", seals[1])


@pytest.mark.parametrize("cached", [False, True])
def test_body_moved_to_another_index_is_bad_signature(
    signer: Signer, keyring: Keyring, cached: bool
) -> None:
    bodies = [b"alpha", b"beta", b"gamma", b"delta"]
    seals = signer.seal_batch(bodies)
    verifier = Verifier(keyring)
    if cached:
        verifier.verify(b"alpha", seals[0])
    for j in (1, 2, 3):
        with pytest.raises(BadSignature):
            verifier.verify(b"alpha", dataclasses.replace(seals[0], index=j))
        with pytest.raises(BadSignature):
            verifier.verify(b"alpha", seals[j])


def test_cache_does_not_excuse_a_forged_signature(
    signer: Signer, keyring: CountingKeyring
) -> None:
    bodies = [b"alpha", b"beta"]
    seals = signer.seal_batch(bodies)
    verifier = Verifier(keyring)
    verifier.verify(b"alpha", seals[0])
    forged = bytearray(seals[1].signature)
    forged[0] ^= 1
    with pytest.raises(BadSignature):
        verifier.verify(b"beta", dataclasses.replace(seals[1], signature=bytes(forged)))
    # The forgery really reached Ed25519 rather than being waved through.
    assert keyring.calls == 2
    # And the genuine seal is still accepted from the cache.
    assert verifier.verify(b"beta", seals[1]) == "province-44"
    assert keyring.calls == 2


def test_cache_does_not_transfer_between_keys(ca: CA, signer: Signer, keyring: Keyring) -> None:
    # Same root, same signature bytes, but claimed under another trusted key.
    other_key = ed25519.Ed25519PrivateKey.generate()
    other = Signer(other_key, _cert_for(ca, other_key, cn="province-45"))
    keyring.add_certificate(other.cert_der, now=now())
    (seal,) = signer.seal_batch([b"x"])
    verifier = Verifier(keyring)
    verifier.verify(b"x", seal)
    with pytest.raises(BadSignature):
        verifier.verify(b"x", dataclasses.replace(seal, key_id=other.key_id))


def test_unknown_and_revoked_authors(ca: CA, signer: Signer, keyring: Keyring) -> None:
    (seal,) = signer.seal_batch([b"x"])
    verifier = Verifier(keyring)
    with pytest.raises(UnknownAuthor):
        Verifier(Keyring(ca.cert_pem)).verify(b"x", seal)
    assert verifier.verify(b"x", seal) == "province-44"
    keyring.revoke(signer.key_id)
    # A cached triple must not outlive revocation.
    with pytest.raises(UnknownAuthor):
        verifier.verify(b"x", seal)


def test_inconsistent_seal_is_bad_signature(signer: Signer, keyring: Keyring) -> None:
    seals = signer.seal_batch([b"a", b"b", b"c"])
    verifier = Verifier(keyring)
    for bad in (
        dataclasses.replace(seals[0], index=5),
        dataclasses.replace(seals[0], size=0),
        dataclasses.replace(seals[0], proof=seals[0].proof[:1]),
        dataclasses.replace(seals[0], proof=(b"short",) + seals[0].proof[1:]),
        Seal(signer.key_id, b"", 0, 1, ()),
    ):
        with pytest.raises(BadSignature):
            verifier.verify(b"a", bad)


def test_cache_is_bounded(signer: Signer, keyring: CountingKeyring) -> None:
    verifier = Verifier(keyring, cache_size=2)
    batches = [(b, signer.seal_batch([b])[0]) for b in (b"1", b"2", b"3")]
    for body, seal in batches:
        verifier.verify(body, seal)
    assert keyring.calls == 3
    verifier.verify(*batches[0])  # evicted: verified again
    assert keyring.calls == 4
    verifier.verify(*batches[2])  # still cached
    assert keyring.calls == 4


def test_a_batch_checked_together_costs_one_ed25519_call_and_refuses_tampering(
    signer: Signer, keyring: CountingKeyring
) -> None:
    bodies = [f"body-{i}".encode() for i in range(37)]
    seals = signer.seal_batch(bodies)
    verifier = Verifier(keyring, cache_size=0)  # no signature cache: only the batch's proven tree helps
    proven: dict = {}
    for body, seal in zip(bodies, seals):
        assert verifier.verify(body, seal, proven) == "province-44"
    assert keyring.calls == 1
    # A tampered body and a moved body fail even with every node of the tree proven.
    with pytest.raises(BadSignature):
        verifier.verify(b"body-x", seals[3], proven)
    with pytest.raises(BadSignature):
        verifier.verify(bodies[3], seals[4], proven)
    # A forged signature does not share the proven tree (it is keyed by signature).
    forged = dataclasses.replace(seals[5], signature=bytes(64))
    with pytest.raises(BadSignature):
        verifier.verify(bodies[5], forged, proven)
    # Revoking the key refuses even changes that join a proven tree.
    keyring.revoke(signer.key_id)
    with pytest.raises(UnknownAuthor):
        verifier.verify(bodies[6], seals[6], proven)
