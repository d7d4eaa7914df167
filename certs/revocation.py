"""The federation's revocation list: certificates and signing keys no longer trusted.

The national admins publish one file (``yipanqi federation revoke`` appends to
it) and every node and hub is configured to read it (``[tls].revoked``). A line
is a certificate serial in hex or a signing key id (``ed25519:...``); ``#``
starts a comment. Processes re-read the file when it changes, so a revocation
takes effect without a restart: new connections with a revoked TLS
certificate are refused (a hub refuses such a client; a node or hub refuses
such a hub before opening a session to it, and ends a session already open,
see ``runtime.link``), and changes signed with a revoked key that arrive
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
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size): an append within one mtime tick still shows
        self._tokens: frozenset[str] = frozenset()

    def tokens(self) -> frozenset[str]:
        """The revoked serials and key ids, re-read if the file changed."""
        if self.path is None:
            return self._tokens
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return self._tokens
        seen = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if seen != self._seen:
                lines = self.path.read_text(encoding="utf-8").splitlines()
                tokens = {_norm_revocation(t) for t in (ln.split("#", 1)[0].strip() for ln in lines) if t}
                self._tokens, self._seen = frozenset(tokens), seen
            return self._tokens

    def certificate_revoked(self, pem: bytes) -> bool:
        return self.revoked_serial(pem) is not None

    def revoked_serial(self, cert: bytes) -> str | None:
        """The serial (normal form) of this certificate, PEM or DER, if it is on the list; else None."""
        parsed = x509.load_pem_x509_certificate(cert) if cert.lstrip().startswith(b"-----BEGIN") \
            else x509.load_der_x509_certificate(cert)
        serial = _norm_revocation(format(parsed.serial_number, "x"))
        return serial if serial in self.tokens() else None


def append(path: Path, token: str, note: str) -> str:
    """Add a serial or key id to the list file; returns its normal form."""
    norm = _norm_revocation(token)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{norm}  # {note}\n")
    return norm
