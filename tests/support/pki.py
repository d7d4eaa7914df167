"""A throwaway federation PKI for tests.

``build_pki(dir)`` creates a federation CA with ``certs.ca.create_ca`` and
issues real credentials (``certs.ca.issue_identity``) for the provinces and
hubs the tests use plus one operator, and a second, *foreign* CA that issues
its own "province-44": same name, but a certificate the federation never
signed, for "not from the federation CA" tests.

Everything is created once per test session (see the ``pki`` fixture in
tests/contract/conftest.py); ``keyring()`` and ``verifier()`` hand out fresh
objects each call so a test may revoke keys without affecting another.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from certs.ca import CA, IssuedPaths, create_ca, issue_identity
from certs.keyring import Keyring
from certs.signing import Signer, Verifier

PROVINCES = ("province-11", "province-31", "province-44", "province-45")
HUBS = ("hub-pearl", "hub-national")
OPERATOR = "operator-44-admin"
SIGNING_IDENTITIES = PROVINCES + HUBS
FOREIGN_IDENTITY = "province-44"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class PKI:
    dir: Path
    ca: CA
    issued: dict[str, IssuedPaths]
    foreign_ca: CA
    foreign_issued: IssuedPaths
    _signers: dict[str, Signer] = field(default_factory=dict)
    _foreign_signer: Signer | None = None

    # -- signing ------------------------------------------------------------
    def signer(self, identity: str) -> Signer:
        """The federation-issued signer of ``identity`` (a province or hub)."""
        if identity not in self._signers:
            paths = self.issued[identity]
            if paths.sign_key is None or paths.sign_cert is None:
                raise ValueError(f"{identity} has no signing credentials")
            self._signers[identity] = Signer.load(paths.sign_key, paths.sign_cert)
        return self._signers[identity]

    def sign_paths(self, identity: str) -> tuple[Path, Path]:
        paths = self.issued[identity]
        assert paths.sign_key is not None and paths.sign_cert is not None
        return paths.sign_key, paths.sign_cert

    def foreign_signer(self) -> Signer:
        """A "province-44" signer whose certificate comes from the foreign CA."""
        if self._foreign_signer is None:
            paths = self.foreign_issued
            assert paths.sign_key is not None and paths.sign_cert is not None
            self._foreign_signer = Signer.load(paths.sign_key, paths.sign_cert)
        return self._foreign_signer

    def sealer(self, identity: str):  # type: ignore[no-untyped-def]
        """A ``Store.write_local`` sealer signing as ``identity``."""
        signer = self.signer(identity)
        return lambda bodies: signer.seal_batch(bodies)

    # -- trust -------------------------------------------------------------
    def keyring(self, *, exclude: tuple[str, ...] = ()) -> Keyring:
        """A fresh keyring trusting the federation CA with every signing cert added."""
        ring = Keyring(self.ca.cert_pem)
        at = now()
        for identity in SIGNING_IDENTITIES:
            if identity not in exclude:
                ring.add_certificate(self.signer(identity).cert_der, now=at)
        return ring

    def verifier(self, *, exclude: tuple[str, ...] = ()) -> Verifier:
        return Verifier(self.keyring(exclude=exclude))

    @property
    def operator_paths(self) -> IssuedPaths:
        return self.issued[OPERATOR]


def build_pki(root: Path, *, now: dt.datetime | None = None) -> PKI:
    """A throwaway PKI; ``now`` is when its certificates are issued (default: the real time)."""
    root = Path(root)
    ca = create_ca(root / "ca", now=now)
    issued = {ident: issue_identity(ca, ident, root / ident, now=now) for ident in SIGNING_IDENTITIES}
    issued[OPERATOR] = issue_identity(ca, OPERATOR, root / OPERATOR, now=now)
    foreign_ca = create_ca(root / "foreign-ca")
    foreign = issue_identity(foreign_ca, FOREIGN_IDENTITY, root / "foreign" / FOREIGN_IDENTITY)
    return PKI(root, ca, issued, foreign_ca, foreign)
