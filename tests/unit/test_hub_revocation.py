"""A node's pre-flight check of its hub's TLS certificate, against a real local mTLS gRPC server.

Python gRPC shows a client nothing of the server's certificate, so before a link opens its
channel (and while the revocation list is not empty) it does a TLS handshake of its own
(``runtime.transport.server_certificate``) and asks ``certs.revocation`` about what the hub proved.
"""

from __future__ import annotations

import socket
import ssl
import threading
from concurrent import futures
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.ca import create_ca, issue_identity
from certs.revocation import RevocationList, append
from runtime.config import HubAddress, TLSPaths
from runtime.link import Link
from runtime.transport import server_certificate, server_credentials


class _Peer:
    """What Link asks of its peer before a session opens: the revocation list."""

    def __init__(self, revocations: RevocationList) -> None:
        self.revocations = revocations


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = create_ca(root / "ca")
    issue_identity(ca, "hub-pearl", root / "pearl")
    issue_identity(ca, "province-44", root / "44")
    return {"root": root, "ca": root / "ca" / "ca.crt", "pearl": root / "pearl", "node": root / "44"}


@pytest.fixture(scope="module")
def hub(pki: dict[str, Path]) -> Iterator[str]:
    """hub-pearl's mTLS gRPC server (no services: the handshake is all that is checked)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    creds = server_credentials(pki["ca"], pki["pearl"] / "tls.crt", pki["pearl"] / "tls.key")
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def _node_tls(pki: dict[str, Path], revoked: Path) -> TLSPaths:
    return TLSPaths(pki["ca"], pki["node"] / "tls.crt", pki["node"] / "tls.key", revoked)


def _serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_certificate_is_the_hubs_own(pki: dict[str, Path], hub: str) -> None:
    der = server_certificate(hub, "hub-pearl", pki["ca"], pki["node"] / "tls.crt", pki["node"] / "tls.key")
    assert format(x509.load_der_x509_certificate(der).serial_number, "x") == _serial(pki["pearl"] / "tls.crt")


def test_server_certificate_must_name_the_expected_hub(pki: dict[str, Path], hub: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        server_certificate(hub, "hub-bohai", pki["ca"], pki["node"] / "tls.crt", pki["node"] / "tls.key")


def test_server_certificate_of_a_hub_that_is_down_raises_oserror(pki: dict[str, Path]) -> None:
    with pytest.raises(OSError):
        server_certificate(f"127.0.0.1:{_free_port()}", "hub-pearl", pki["ca"], pki["node"] / "tls.crt",
                           pki["node"] / "tls.key", timeout=1)


def test_revoked_serial_reads_pem_and_der(pki: dict[str, Path], tmp_path: Path) -> None:
    listed = tmp_path / "revoked.txt"
    listed.write_text("# nothing yet\n")
    revocations = RevocationList(listed)
    pem = (pki["pearl"] / "tls.crt").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    assert revocations.revoked_serial(pem) is None and revocations.revoked_serial(der) is None
    serial = append(listed, _serial(pki["pearl"] / "tls.crt"), "test")
    assert revocations.revoked_serial(pem) == serial == revocations.revoked_serial(der)
    assert revocations.certificate_revoked(pem)


def _link(pki: dict[str, Path], listed: Path, address: str) -> Link:
    return Link(_Peer(RevocationList(listed)), [HubAddress("pearl", address)],  # type: ignore[arg-type]
                _node_tls(pki, listed), source=lambda after, limit: ([], after), push_cursor="push",
                for_province="44", stop=threading.Event())


def test_link_refuses_a_hub_whose_certificate_is_revoked(pki: dict[str, Path], hub: str, tmp_path: Path) -> None:
    listed = tmp_path / "revoked.txt"
    listed.write_text("")
    serial = append(listed, _serial(pki["pearl"] / "tls.crt"), "hub-pearl")
    link = _link(pki, listed, hub)
    assert link._session(link.hubs[0], None) is False
    assert link.state.hub is None
    assert link.state.last_error == f"hub-pearl: certificate revoked (serial {serial})"


def test_link_reports_a_hub_it_cannot_handshake_with_as_not_reachable(pki: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    listed = tmp_path / "revoked.txt"
    listed.write_text("")
    append(listed, _serial(pki["node"] / "tls.crt"), "someone else")
    link = _link(pki, listed, f"127.0.0.1:{_free_port()}")
    assert link._session(link.hubs[0], None) is False
    assert link.state.last_error == "hub-pearl: not reachable"
