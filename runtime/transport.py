"""gRPC transport: mTLS credentials, channels, and who is on the other end.

Every connection is mutual TLS with certificates from the federation CA. A
peer's identity is the CN of the certificate it proved during the handshake;
nothing a peer says in a message can change it. A client without a valid
certificate never gets past the handshake (require_client_auth=True).

A client verifies the server the standard way: the certificate must chain to
the federation CA and name the host it dials (a DNS or IP SAN), exactly as
openssl ``-verify_hostname``, grpcurl or grpc-js check it; there is no
server-name override. Which federation member answered (the CN) is checked by
``server_certificate``, a TLS handshake of its own (gRPC shows a Python client
nothing of the server's certificate), which the link runs before each session.
Servers refuse a second process on their address (``grpc.so_reuseport`` off).
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import grpc

from certs.revocation import RevocationList
from core.errors import PermissionDenied
from runtime.config import PRODUCTION_TIMING, Timing

log = logging.getLogger("yipanqi.transport")

# Every endpoint, Admin included: gRPC refuses a longer message from its length prefix,
# before reading or parsing it (RESOURCE_EXHAUSTED), so no call can make the process hold
# more than this per message. Batches are cut at runtime.wire.BATCH_BYTES and a change body is
# at most 256 KiB, so an honest message is far below it.
MAX_MESSAGE = 8 * 1024 * 1024


def _keepalive(timing: Timing) -> list[tuple[str, int]]:
    """Message limits and keepalive, the same on both ends: pings every ``keepalive_s``, a peer
    silent for ``keepalive_timeout_s`` after one is dropped (20 s + 10 s in production)."""
    ping, wait = _ms(timing.keepalive_s), _ms(timing.keepalive_timeout_s)
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        # Ping idle peers too: a peer lost in a partition (nothing closed) is dropped in ~30 s
        # instead of holding its streams and worker threads for hours.
        ("grpc.keepalive_time_ms", ping),
        ("grpc.keepalive_timeout_ms", wait),
        # gRPC core (1.85) waits for a keepalive ping's ack up to the general ping timeout (60 s by
        # default), not keepalive_timeout_ms: a frozen or partitioned hub was noticed after 80 s, not 30.
        ("grpc.http2.ping_timeout_ms", wait),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(timing: Timing = PRODUCTION_TIMING) -> list[tuple[str, int]]:
    """A client channel's options; keepalive from ``timing``."""
    return _keepalive(timing) + [("grpc.http2.max_pings_without_data", 0)]


def server_options(timing: Timing = PRODUCTION_TIMING) -> list[tuple[str, int]]:
    """A server's options; keepalive from ``timing``, as for channels."""
    return [
        # One process per address: with SO_REUSEPORT (gRPC's default) a second instance binds the same
        # port and the kernel shares the connections between them.
        ("grpc.so_reuseport", 0),
        *_keepalive(timing),
        # Clients ping every keepalive_s: accept pings that often (never more than every 5 s required).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", min(5_000, _ms(timing.keepalive_s))),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))



def server_credentials(ca: Path, cert: Path, key: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=ca.read_bytes(),
        require_client_auth=True,
    )


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host without brackets, port)."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def secure_channel(address: str, server_identity: str, ca: Path, cert: Path, key: Path, *,
                   timing: Timing = PRODUCTION_TIMING) -> grpc.Channel:
    """A channel to ``address`` whose server must prove a federation certificate naming the host
    dialled (standard hostname verification). ``server_identity`` is who we expect there; gRPC
    cannot check a CN, so a caller that must know who answered runs ``server_certificate``.
    ``timing``: its keepalive (the process's [timing])."""
    del server_identity  # verified by server_certificate, see the module header
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(), private_key=key.read_bytes(), certificate_chain=cert.read_bytes()
    )
    return grpc.secure_channel(address, creds, options=channel_options(timing))


class WrongPeer(ssl.SSLCertVerificationError):
    """The server proved a valid certificate for the host, but of another federation member."""


def server_certificate(address: str, server_identity: str, ca: Path, cert: Path, key: Path,
                       timeout: float = 3.0) -> bytes:
    """The certificate (DER) a server at ``address`` proves in a TLS handshake: it must chain to
    ``ca``, name the host in ``address`` (as ``secure_channel`` checks it) and be
    ``server_identity``'s (its CN).

    Python gRPC shows a client nothing of the server's certificate, so this is a separate
    handshake on its own connection, closed right after (no HTTP/2 is spoken). Servers require
    client authentication, so ours (``cert``/``key``) is presented. Raises
    ``ssl.SSLCertVerificationError`` when the certificate is not trusted or does not name the
    host (``describe_failure`` words it), ``WrongPeer`` when it is another member's, and other
    ``OSError`` (``ConnectionRefusedError``, ``TimeoutError``, ...) when no handshake completes.
    Whether the certificate is still trusted is for ``certs.revocation`` to say.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.load_verify_locations(cafile=str(ca))
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{server_identity} at {address} proved no certificate")
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    who = str(names[0].value) if names else "?"
    if who != server_identity:
        err = WrongPeer(f"{address} answered with the certificate of {who}, not {server_identity}")
        err.verify_message = f"the certificate is for {who}, not {server_identity}"
        raise err
    return der


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH
_NAME_MISMATCH = (62, 64)


def describe_failure(address: str, err: OSError) -> str:
    """One line for an operator: why no trusted TLS session with ``address`` came up."""
    if isinstance(err, WrongPeer):
        return f"{address}: {err.verify_message}"
    if isinstance(err, ssl.SSLCertVerificationError):
        if err.verify_code in _NAME_MISMATCH:
            return (f"{address}: the server's certificate does not name {split_address(address)[0]} "
                    f"(hostname verification failed; issue it with --address for this host)")
        return f"{address}: the server's certificate is not trusted ({err.verify_message})"
    if isinstance(err, ssl.SSLError):
        return f"{address}: TLS handshake failed ({err.reason or err})"
    return f"{address}: not reachable ({err.strerror or err})"


class PeerGate:
    """Who is calling: the CN of the client certificate proved in the TLS
    handshake, refused if that certificate has since been revoked."""

    def __init__(self, revocations: RevocationList | None = None) -> None:
        self.revocations = revocations or RevocationList(None)

    def identity(self, context: grpc.ServicerContext) -> str:
        auth = context.auth_context()
        names = auth.get("x509_common_name") or []
        if len(names) != 1:
            raise PermissionDenied("no client certificate identity")
        who = names[0].decode()
        pems = auth.get("x509_pem_cert") or []
        if pems and self.revocations.tokens() and self.revocations.certificate_revoked(pems[0]):
            log.warning("refused %s: its certificate is revoked", who)
            raise PermissionDenied(f"the certificate of {who} is revoked")
        return who
