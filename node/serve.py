"""Running a node or hub process: gRPC server, health, reflection, signals, logs."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import signal
import sys
import threading
from concurrent import futures
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from certs.keyring import Keyring
from cli.config import TLSPaths
from node.fairshare import FairShareInterceptor, Slots, workers_needed
from node.interceptor import ErrorInterceptor
from node.transport import SERVER_OPTIONS, server_credentials
from yipanqi.v1 import admin_pb2, federation_pb2


def setup_logging(identity: str, level: str) -> None:
    fmt = f"%(asctime)s %(levelname)s {identity} %(name)s: %(message)s"
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=fmt, force=True)


def keyring_for(tls: TLSPaths, own_signing_cert_der: bytes | None = None) -> Keyring:
    keyring = Keyring(tls.ca.read_bytes())
    if own_signing_cert_der is not None:
        keyring.add_certificate(own_signing_cert_der, now=dt.datetime.now(dt.timezone.utc))
    return keyring


def build_server(listen: str, tls: TLSPaths, register: Callable[[grpc.Server], None], *,
                 slots: Slots) -> tuple[grpc.Server, health.HealthServicer]:
    """The gRPC server: every call takes a fair-share slot (node.fairshare) before it runs, and
    the worker pool holds every party's full share, so no party can take another's thread.
    (Threads start on demand; gRPC's global cap is only a backstop at the pool's size.)"""
    tune_malloc()  # before the server's threads start
    workers = workers_needed()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         interceptors=[ErrorInterceptor(), FairShareInterceptor(slots)],
                         options=SERVER_OPTIONS, maximum_concurrent_rpcs=workers)
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        federation_pb2.DESCRIPTOR.services_by_name["Federation"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_secure_port(listen, server_credentials(tls.ca, tls.cert, tls.key))
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
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
    node.fairshare); by default glibc gives each of up to 8 x cores of them an arena of its own,
    and memory freed in one stays in its arena, so RSS grew with the number of streams rather
    than with what they hold. Python's GIL leaves little for more arenas to win. No-op off glibc."""
    import ctypes

    try:  # by name: ctypes.util.find_library would run ldconfig on every start
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENAS)
    except (OSError, AttributeError):
        pass


def run_until_signal(server: grpc.Server, stop: threading.Event, on_stop: Callable[[], None]) -> None:
    log = logging.getLogger("yipanqi.serve")

    def handle(signum, _frame):  # type: ignore[no-untyped-def]
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
