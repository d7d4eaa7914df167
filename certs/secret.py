"""The federation secret: the HMAC key of person keys (core.personkey).

How this works. ``create`` makes 32 random bytes beside the CA (``federation
init`` / ``federation ca``), mode 0600. Nodes and the national hub get a copy,
never regional hubs (they route by key and must not be able to tell whose it is).

On enrolment the secret travels inside the certificates file, sealed to the
enrolling process: ``yipanqi enrol`` makes an X25519 key pair in the process's
directory (``secret.key``, 0600; it never leaves) and puts the public half in
request.json; at the CA, ``seal`` does an ephemeral X25519 exchange with it,
derives a ChaCha20-Poly1305 key with HKDF-SHA256 and encrypts the secret, bound
(as associated data) to the identity it is for. Back on the machine, ``unseal``
opens it and the process writes ``federation.secret`` (0600), named by its
config. Whoever copies the certificates file learns nothing of the secret.

``read`` is the start-up check: the file exists, is readable, is not readable
by group or others, and holds exactly 32 bytes; otherwise a ValidationError
names the config key and the reason (never the secret's bytes).
"""

from __future__ import annotations

import base64
import os
import stat
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from certs.ca import KEY_MODE, _write_file
from core.errors import ValidationError
from core.personkey import SECRET_BYTES

FILE = "federation.secret"
SEAL_KEY = "secret.key"  # the X25519 private key an enrolling process opens the sealed secret with
_INFO = b"yipanqi federation secret/1"


def create(path: Path) -> bytes:
    """Make a new secret at ``path`` (0600); refuses to overwrite one (every key depends on it)."""
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    secret = os.urandom(SECRET_BYTES)
    write(path, secret)
    return secret


def write(path: Path, secret: bytes) -> None:
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a federation secret is {SECRET_BYTES} bytes")
    _write_file(path, secret, KEY_MODE)


def read(path: Path, field: str) -> bytes:
    """The secret at ``path``, checked; ValidationError(field, why) otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ValidationError(field, f"file not found: {path}") from None
    except OSError as err:
        raise ValidationError(field, f"cannot read {path}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(field, f"{path} is not a file")
    if st.st_mode & 0o077:
        raise ValidationError(field, f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                                     "chmod 600 it")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValidationError(field, f"cannot read {path}: {err.strerror}") from None
    if len(data) != SECRET_BYTES:
        raise ValidationError(field, f"{path} holds {len(data)} bytes, not the {SECRET_BYTES} of a federation secret")
    return data


# -- sealing it to an enrolling process ------------------------------------------------------
def new_seal_key(path: Path) -> str:
    """Make the X25519 key pair at ``path`` (0600); return the public key, base64."""
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    key = x25519.X25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write_file(path, pem, KEY_MODE)
    return _b64(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, field: str, size: int | None = None) -> bytes:
    try:
        data = base64.b64decode(str(value), validate=True)
    except ValueError:
        raise ValidationError(field, "not base64") from None
    if size is not None and len(data) != size:
        raise ValidationError(field, f"must be {size} bytes")
    return data


def _aead(shared: bytes, identity: str) -> ChaCha20Poly1305:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + b"|" + identity.encode()).derive(shared)
    return ChaCha20Poly1305(key)


def seal(secret: bytes, recipient_public_b64: object, identity: str, field: str = "secret_pub") -> dict[str, str]:
    """The secret encrypted to ``recipient_public_b64`` (X25519, base64) for ``identity``."""
    if recipient_public_b64 is None:
        raise ValidationError(field, "missing: the request has no key to seal the federation secret to "
                                     "(make it again with this release's `yipanqi enrol`)")
    recipient = x25519.X25519PublicKey.from_public_bytes(_unb64(recipient_public_b64, field, 32))
    ephemeral = x25519.X25519PrivateKey.generate()
    nonce = os.urandom(12)
    ct = _aead(ephemeral.exchange(recipient), identity).encrypt(nonce, secret, identity.encode())
    epk = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"epk": _b64(epk), "nonce": _b64(nonce), "ct": _b64(ct)}


def unseal(sealed: object, key_path: Path, identity: str, field: str = "federation_secret") -> bytes:
    """Open what ``seal`` made with the private key at ``key_path``; ValidationError if it does not open."""
    from cryptography.exceptions import InvalidTag

    if not isinstance(sealed, dict):
        raise ValidationError(field, "missing (the CA must seal the federation secret to this request)")
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise ValidationError(field, f"{key_path} is not an X25519 key")
    epk = x25519.X25519PublicKey.from_public_bytes(_unb64(sealed.get("epk"), f"{field}.epk", 32))
    nonce = _unb64(sealed.get("nonce"), f"{field}.nonce", 12)
    try:
        secret = _aead(key.exchange(epk), identity).decrypt(nonce, _unb64(sealed.get("ct"), f"{field}.ct"),
                                                            identity.encode())
    except InvalidTag:
        raise ValidationError(field, f"does not open with {key_path}: not sealed to this process's key") from None
    if len(secret) != SECRET_BYTES:
        raise ValidationError(field, f"holds {len(secret)} bytes, not {SECRET_BYTES}")
    return secret


# -- handing it to a process enrolled without it (``enrol secret-request`` / ``federation secret-seal``) --
# A process enrolled before the secret existed, or whose secret file was lost, asks for it without
# re-enrolling: a request carries a fresh X25519 public key, signed with the process's certified TLS
# key behind its own prefix (so the signature stands for nothing else); the CA checks the
# certificate (its own, unexpired, not revoked, of the identity named), the signature and that
# the identity holds the secret at all, and seals the secret to that key for that identity.
REQUEST = "secret-request/1"
SEALED = "sealed-secret/1"
_REQUEST_PREFIX = b"yipanqi secret request v1\n"


def holds_secret(identity: str) -> bool:
    """Nodes and the national hub hold the federation secret; regional hubs and operators never."""
    return identity.startswith("province-") or identity == "hub-national"


def _request_message(identity: str, secret_pub: str) -> bytes:
    from core import canonical

    return _REQUEST_PREFIX + canonical.dumps({"yipanqi": REQUEST, "identity": identity, "secret_pub": secret_pub})


def make_request(identity: str, tls_key: Path, tls_crt: Path, seal_key: Path) -> dict[str, str]:
    """A signed request for the secret: a fresh X25519 key at ``seal_key`` (0600; an older one
    there is replaced), its public half signed with the TLS key at ``tls_key``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if not holds_secret(identity):
        raise ValidationError("identity", _never(identity))
    key = serialization.load_pem_private_key(tls_key.read_bytes(), None)
    seal_key.unlink(missing_ok=True)
    pub = new_seal_key(seal_key)
    message = _request_message(identity, pub)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    else:
        raise ValidationError("tls.key", f"{tls_key} is neither an EC nor an Ed25519 key")
    return {"yipanqi": REQUEST, "identity": identity, "secret_pub": pub,
            "tls_crt": tls_crt.read_text(encoding="ascii"), "signature": _b64(signature)}


def _never(identity: str) -> str:
    return (f"{identity} never holds the federation secret: only province nodes and the national hub do "
            "(a regional hub routes by key and must not be able to tell whose record it is)")


def check_request(doc: object, ca_pem: bytes, revoked: frozenset[str], now: datetime) -> tuple[str, str]:
    """The (identity, X25519 public key) of a good request; ValidationError naming the field otherwise."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import NameOID

    from certs.keyring import _norm_revocation
    from core.identity import Identity

    if not isinstance(doc, dict) or doc.get("yipanqi") != REQUEST:
        raise ValidationError("yipanqi", f"not a secret request (must be {REQUEST!r})")
    identity = doc.get("identity")
    try:
        Identity.parse(str(identity))
    except ValidationError as err:
        raise ValidationError("identity", err.reason) from None
    if not holds_secret(str(identity)):
        raise ValidationError("identity", _never(str(identity)))
    pub = doc.get("secret_pub")
    _unb64(pub, "secret_pub", 32)
    try:
        cert = x509.load_pem_x509_certificate(str(doc.get("tls_crt") or "").encode())
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise ValidationError("tls_crt", "not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ValidationError("tls_crt", "not issued by this federation's CA") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != identity:
        raise ValidationError("tls_crt", f"the certificate is not {identity}'s")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ValidationError("tls_crt", f"not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
                                         f"{cert.not_valid_after_utc:%Y-%m-%d})")
    if _norm_revocation(format(cert.serial_number, "x")) in revoked:
        raise ValidationError("tls_crt", "revoked (it is on the federation's revocation list)")
    signature = _unb64(doc.get("signature"), "signature")
    message = _request_message(str(identity), str(pub))
    public = cert.public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, message)
        else:
            raise InvalidSignature()
    except InvalidSignature:
        raise ValidationError("signature", f"does not verify with {identity}'s certificate: "
                                           "the request was altered or not made with its key") from None
    return str(identity), str(pub)


def seal_request(secret: bytes, identity: str, secret_pub: str) -> dict[str, object]:
    """The reply to a checked request: the secret sealed to its key, for its identity."""
    return {"yipanqi": SEALED, "identity": identity, "federation_secret": seal(secret, secret_pub, identity)}


def open_reply(doc: object, seal_key: Path, identity: str) -> bytes:
    """The secret in a reply to our own request; ValidationError naming the field otherwise."""
    if not isinstance(doc, dict) or doc.get("yipanqi") != SEALED:
        raise ValidationError("yipanqi", f"not a sealed secret (must be {SEALED!r})")
    if doc.get("identity") != identity:
        raise ValidationError("identity", f"sealed for {doc.get('identity')!r}, not {identity}")
    if not seal_key.is_file():
        raise ValidationError("federation_secret", f"{seal_key} is missing: make the request again on this machine")
    return unseal(doc.get("federation_secret"), seal_key, identity)
