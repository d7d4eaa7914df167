"""The federation's revocation list: certificates and signing keys no longer trusted.

The national admins publish one file (``yipanqi federation revoke`` appends to
it) and every node and hub is configured to read it (``[tls].revoked``). A line
is a certificate serial in hex or a signing key id (``ed25519:...``); ``#``
starts a comment. Processes re-read the file when it changes, so a revocation
takes effect without a restart: new connections with a revoked TLS
certificate are refused, and changes signed with a revoked key that arrive
afterwards are quarantined everywhere. Changes accepted before the revocation
stay (they were valid when they were signed and checked).
"""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography import x509

from certs.keyring import _norm_revocation


class RevocationList:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._tokens: frozenset[str] = frozenset()

    def tokens(self) -> frozenset[str]:
        """The revoked serials and key ids, re-read if the file changed."""
        if self.path is None:
            return self._tokens
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return self._tokens
        with self._lock:
            if mtime != self._mtime:
                lines = self.path.read_text(encoding="utf-8").splitlines()
                tokens = {_norm_revocation(t) for t in (ln.split("#", 1)[0].strip() for ln in lines) if t}
                self._tokens, self._mtime = frozenset(tokens), mtime
            return self._tokens

    def certificate_revoked(self, pem: bytes) -> bool:
        cert = x509.load_pem_x509_certificate(pem)
        return _norm_revocation(format(cert.serial_number, "x")) in self.tokens()


def append(path: Path, token: str, note: str) -> str:
    """Add a serial or key id to the list file; returns its normal form."""
    norm = _norm_revocation(token)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{norm}  # {note}\n")
    return norm
