"""Running a node or hub process: gRPC server, health, reflection (v1 and v1alpha), signals, logs.

Start-up failures (an address in use or not ours, a second instance, a store that
cannot be opened, an unreadable key) are a ``StartupError``: one line naming the
address or file, which ``yipanqi node|hub run`` prints and exits non-zero with,
never a traceback. ``starting`` turns the OS and database errors of start-up into one.
"""

from __future__ import annotations

import datetime as dt
import errno
import gc
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from certs.keyring import Keyring
from core.printable import escape
from runtime.config import PRODUCTION_TIMING, Timing, TLSPaths
from runtime import reflection
from runtime.fairshare import FairShareInterceptor, Slots, workers_needed
from runtime.interceptor import ErrorInterceptor
from runtime.transport import server_credentials, server_options, split_address
from yipanqi.v2 import admin_pb2, federation_pb2


class EscapingFormatter(logging.Formatter):
    """One record, one line: control and format characters in a message (a peer's text quoted in
    an error, say) are escaped (``core.printable``), so nothing can forge a line or act on the
    terminal of whoever reads the log. A traceback that follows keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)
class StartupError(Exception):
    """The process cannot start; the message is one line for the operator."""


def _bind_error(address: str) -> str | None:
    """Why ``address`` cannot be bound (found by binding it ourselves), or None if it can."""
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server bind
            probe.bind(sockaddr)
    except socket.gaierror as err:
        return f"unknown host ({err.strerror})"
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        return reason + " (is another instance running?)" if err.errno == errno.EADDRINUSE else reason
    return None


def bind_failure(address: str, what: str) -> StartupError:
    """The error for an address that would not bind (gRPC says only that it failed, not why)."""
    return StartupError(f"cannot {what} on {address}: {_bind_error(address) or 'refused'}")


def check_addresses(listen: str, metrics_port: int | None) -> None:
    """Before anything starts (and logs): refuse addresses this process cannot bind, with the
    reason; the binds themselves report the same if the address is taken in between."""
    if (why := _bind_error(listen)) is not None:
        raise StartupError(f"cannot listen on {listen}: {why}")
    if metrics_port is not None:
        host = split_address(listen)[0]
        address = f"[{host}]:{metrics_port}" if ":" in host else f"{host}:{metrics_port}"
        if (why := _bind_error(address)) is not None:
            raise StartupError(f"cannot serve metrics on {address}: {why}")


@contextmanager
def starting(identity: str) -> Iterator[None]:
    """Start-up errors as one ``StartupError`` line that says who and what."""
    from core.errors import StoreUnavailable

    try:
        yield
    except StartupError as err:
        raise StartupError(f"{identity}: {err}") from None
    except StoreUnavailable as err:  # the store raises the core's error, never SQLAlchemy's (store.health)
        raise StartupError(f"{identity}: cannot open its store: {err}") from None
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        raise StartupError(f"{identity}: cannot start: {(err.strerror or str(err)).lower()}{where}") from None


def setup_logging(identity: str, level: str) -> None:
    """Log lines on stderr, each with our identity. They never carry a name, an ID number or a birth
    date: refusals are logged by field and rule (``SyncError.log_text``), never with the value."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(f"%(asctime)s %(levelname)s {identity} %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def keyring_for(tls: TLSPaths, own_signing_cert_der: bytes | None = None) -> Keyring:
    keyring = Keyring(tls.ca.read_bytes())
    if own_signing_cert_der is not None:
        keyring.add_certificate(own_signing_cert_der, now=dt.datetime.now(dt.timezone.utc))
    return keyring


def build_server(listen: str, tls: TLSPaths, register: Callable[[grpc.Server], None], *,
                 slots: Slots, timing: Timing = PRODUCTION_TIMING) -> tuple[grpc.Server, health.HealthServicer]:
    """The gRPC server: every call takes a fair-share slot (runtime.fairshare) before it runs, and
    the worker pool holds every party's full share, so no party can take another's thread.
    (Threads start on demand; gRPC's global cap is only a backstop at the pool's size.)"""
    tune_malloc()  # before the server's threads start
    workers = workers_needed()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         interceptors=[ErrorInterceptor(), FairShareInterceptor(slots)],
                         options=server_options(timing), maximum_concurrent_rpcs=workers)
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        federation_pb2.DESCRIPTOR.services_by_name["Federation"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
        health.SERVICE_NAME,
    ) + reflection.SERVICE_NAMES
    reflection.enable(names, server)  # v1 and v1alpha
    try:
        port = server.add_secure_port(listen, server_credentials(tls.ca, tls.cert, tls.key))
    except RuntimeError:  # "Failed to bind", without the reason
        port = 0
    if port == 0:
        raise bind_failure(listen, "listen")
    for name in names[:2] + ("",):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer


# Young-generation collections every 50,000 net allocations instead of 700. Every change
# allocates dozens of short-lived objects, nearly all freed by reference counting; with the
# default threshold the cyclic collector ran hundreds of times a second and, with full
# collections over the whole heap, took 10-20% of a hub's or node's CPU (bench.hops).
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """Move everything loaded at start-up (modules, config, keys) out of the collector's sight
    and collect young objects less often; memory stays bounded (the bench watches peak RSS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


M_ARENA_MAX = -8  # glibc mallopt parameter
ARENAS = 2


def tune_malloc() -> None:
    """At most ``ARENAS`` glibc malloc arenas. A hub runs a thread per open stream (hundreds, see
    runtime.fairshare); by default glibc gives each of up to 8 x cores of them an arena of its own,
    and memory freed in one stays in its arena, so RSS grew with the number of streams rather
    than with what they hold. Python's GIL leaves little for more arenas to win. No-op off glibc."""
    import ctypes

    try:  # by name: ctypes.util.find_library would run ldconfig on every start
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENAS)
    except (OSError, AttributeError):
        pass


def run_until_signal(server: grpc.Server, stop: threading.Event, on_stop: Callable[[], None]) -> None:
    log = logging.getLogger("yipanqi.serve")

    def handle(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    tune_gc()
    server.start()
    log.info("serving")
    while not stop.wait(0.5):
        pass
    server.stop(grace=2).wait()
    on_stop()
    log.info("stopped")
