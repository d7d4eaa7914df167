"""A second gRPC server on the same address is refused (SO_REUSEPORT off), with a StartupError
that names the address; the pre-start address check says the same before anything is opened."""

from __future__ import annotations

import socket

import pytest

from certs.ca import create_ca, issue_identity
from runtime.config import TLSPaths
from runtime.fairshare import Slots
from runtime.serve import StartupError, build_server, check_addresses


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSPaths:
    root = tmp_path_factory.mktemp("pki")
    paths = issue_identity(create_ca(root / "ca"), "hub-pearl", root / "pearl")
    return TLSPaths(paths.ca_cert, paths.tls_cert, paths.tls_key)


def _port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_second_server_on_one_address_is_refused(tls: TLSPaths) -> None:
    listen = f"127.0.0.1:{_port()}"
    first, _ = build_server(listen, tls, lambda s: None, slots=Slots("pearl"))
    first.start()
    try:
        with pytest.raises(StartupError) as info:
            build_server(listen, tls, lambda s: None, slots=Slots("pearl"))
        assert str(info.value) == f"cannot listen on {listen}: address already in use (is another instance running?)"
        with pytest.raises(StartupError, match="cannot listen on"):
            check_addresses(listen, None)
    finally:
        first.stop(None)


def test_ipv6_and_metrics_addresses_are_checked(tls: TLSPaths) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        metrics = taken.getsockname()[1]
        with pytest.raises(StartupError) as info:
            check_addresses(f"127.0.0.1:{_port()}", metrics)
        assert str(info.value).startswith(f"cannot serve metrics on 127.0.0.1:{metrics}: address already in use")
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            port = s.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback")
    check_addresses(f"[::1]:{port}", port)  # free again: nothing raised
