"""Signing and verifying the exact bytes of record-change batches.

How this works: a ``Signer`` holds a node's Ed25519 key and its signing
certificate. ``seal_batch`` builds a Merkle tree over the change bodies (see
``core.merkle``), signs ``signed_message(root)`` once and hands back one
``Seal`` per body. The bodies are signed as given: nothing is re-encoded, so
the verifier must be handed the very same bytes.

A ``Verifier`` recomputes the root from a body and its seal, then asks the
``Keyring`` whether the signature over that root is valid and whose key it is.
A batch split by routing arrives as many (body, seal) pairs sharing one
(key_id, root, signature); the verifier remembers triples that verified, so
the whole batch costs one Ed25519 verification. The cache key includes the
signature and the root, so a forged signature is never excused by a cached
root, and every hit still asks the keyring for the identity, so revoking a
key takes effect immediately.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from certs.ca import fingerprint_key_id
from certs.keyring import Keyring
from core.certdoc import MESSAGE_PREFIX
from core.errors import BadSignature, ValidationError
from core.identity import Identity
from core.merkle import Proven, Seal, build, signed_message, walk

# Status reports (runtime.reports) are signed behind their own prefix, so a report signature can never
# stand for a batch or certificate-document signature, nor the other way round.
REPORT_PREFIX = b"yipanqi report v1\n"
# Destination receipts and hubs' custody receipts (core.receipts), likewise each behind its own.
RECEIPT_PREFIX = b"yipanqi receipt v2\n"
CUSTODY_PREFIX = b"yipanqi custody v2\n"

ProvenBatches = dict[tuple[str, bytes, int], Proven]  # (key id, signature, size) -> verified tree nodes


class Signer:
    def __init__(self, private_key: ed25519.Ed25519PrivateKey, cert_der: bytes) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise ValidationError("sign.key", "not an Ed25519 private key")
        cert = x509.load_der_x509_certificate(cert_der)
        # Catch a mismatched key/cert pair here, not as BadSignature at peers.
        if cert.public_key() != private_key.public_key():
            raise ValidationError("sign.crt", "does not match the private key")
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cns) != 1 or not isinstance(cns[0].value, str):
            raise ValidationError("sign.crt", "subject must have exactly one CN")
        self._key = private_key
        self.cert_der: bytes = cert_der
        self.not_after: dt.datetime = cert.not_valid_after_utc
        self.key_id: str = fingerprint_key_id(cert_der)
        self.identity: str = str(Identity.parse(cns[0].value))

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> Signer:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValidationError("sign.key", "not an Ed25519 private key")
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        return cls(key, cert.public_bytes(serialization.Encoding.DER))

    def sign_certificate(self, signed: bytes) -> bytes:
        """Ed25519 over a certificate document's signed bytes (core.certdoc), behind its own
        prefix, so a document signature can never stand for a batch signature or vice versa."""
        return self._key.sign(MESSAGE_PREFIX + signed)

    def sign_report(self, body: bytes) -> bytes:
        """Ed25519 over a status report's exact bytes (runtime.reports), behind REPORT_PREFIX."""
        return self._key.sign(REPORT_PREFIX + body)

    def sign_receipt(self, body: bytes) -> bytes:
        """Ed25519 over a destination receipt's exact bytes (core.receipts), behind RECEIPT_PREFIX."""
        return self._key.sign(RECEIPT_PREFIX + body)

    def sign_custody(self, body: bytes) -> bytes:
        """Ed25519 over a hub's custody receipt (core.receipts), behind CUSTODY_PREFIX."""
        return self._key.sign(CUSTODY_PREFIX + body)

    def seal_batch(self, bodies: Sequence[bytes]) -> list[Seal]:
        """One signature over the batch root; one Seal (with proof) per body."""
        if not bodies:
            return []
        root, proofs = build(bodies)
        signature = self._key.sign(signed_message(root))
        size = len(bodies)
        return [
            Seal(self.key_id, signature, index, size, proof)
            for index, proof in enumerate(proofs)
        ]


class Verifier:
    def __init__(self, keyring: Keyring, cache_size: int = 4096) -> None:
        self._keyring = keyring
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, body: bytes, seal: Seal, proven: ProvenBatches | None = None) -> str:
        """Return the author identity of ``body``; BadSignature / UnknownAuthor.

        ``proven`` (one dict per received batch, see ``core.merkle.walk``) keeps
        the tree nodes of every batch signature verified so far, so the other
        changes of that batch are checked with about one hash each.
        """
        tree = None
        if proven is not None:
            batch = (seal.key_id, bytes(seal.signature), seal.size)
            tree = proven.get(batch)
        try:
            root, learned, joined = walk(body, seal.index, seal.size, seal.proof, tree)
        except ValueError as e:
            raise BadSignature(f"seal by {seal.key_id} is inconsistent: {e}") from None
        if joined:  # on a tree whose signature verified in this batch; the key may be revoked since
            identity = self._keyring.identity_of(seal.key_id)
            tree.update(learned)  # type: ignore[union-attr]  # joined: only onto a tree we hold
            return identity
        triple = (seal.key_id, root, bytes(seal.signature))
        with self._lock:
            hit = triple in self._cache
            if hit:
                self._cache.move_to_end(triple)
        if hit:
            # Still consult the keyring: the key may have been revoked since.
            identity = self._keyring.identity_of(seal.key_id)
        else:
            identity = self._keyring.verify(seal.key_id, signed_message(root), triple[2])
            if self._cache_size > 0:
                with self._lock:
                    self._cache[triple] = None
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        if proven is not None:
            if tree is None:
                proven[batch] = learned
            else:
                tree.update(learned)
        return identity
