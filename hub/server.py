"""A hub process: the store-and-forward log, the Federation and Admin services,
and for regional hubs the link up to the national hub."""

from __future__ import annotations

import logging
import threading
from typing import Callable

import grpc

from certs.revocation import RevocationList
from core.errors import StoreUnavailable, ValidationError
from runtime.config import HubConfig
from runtime.transport import PeerGate
from core.routing import Topology
from hub.federation import FederationServicer, ReportRelay
from hub.share import UpstreamShare, upstream_up
from runtime.admin import AdminServicer
from runtime.certificates import CertificateDesk, document_verifier
from runtime.link import Link
from runtime.metrics import serve_metrics
from runtime.outage import log_outages
from runtime.fairshare import Slots
from runtime import clock
from runtime.replica import Replica, now_ms
from runtime.serve import build_server, keyring_for, run_until_signal, setup_logging
from hub.status import hub_status
from store.health import Health
from store.store import LogEntry, Store
from yipanqi.v2 import admin_pb2_grpc, federation_pb2_grpc

log = logging.getLogger("yipanqi.hub")


def run_hub(cfg: HubConfig, relay: ReportRelay | None = None,
            serving: Callable[[str, list[LogEntry]], list[LogEntry]] | None = None) -> None:
    """``relay`` (how reports go upstream) and ``serving`` (what a Pull serves of what is owed):
    only tests pass them (tests/support/rogue_hub.py)."""
    setup_logging(cfg.identity, cfg.log_level)
    clock.set_offset(cfg.timing.clock_offset_s)  # before anything reads the wall clock
    # The national hub keeps the national cross-province case database: it merges records too,
    # and re-keys its legacy person records with the federation secret on the first start after
    # the upgrade (store.rekey); a regional hub holds neither records nor the secret.
    person_secret = None
    if cfg.federation_secret is not None:
        from certs.secret import read

        try:
            person_secret = read(cfg.federation_secret, "[hub].federation_secret")
        except ValidationError as err:
            raise SystemExit(f"{cfg.path}: {err}") from None
    try:
        store = Store.open(cfg.database, owner=cfg.identity, index_routes=True, hold_records=cfg.national,
                           person_secret=person_secret, upgraded=log.info, health=Health(clock.now_ms))
    except StoreUnavailable as err:  # one line, no traceback; systemd restarts us later
        raise SystemExit(f"{cfg.path}: [hub].database: the store is unavailable: {err}") from None
    log_outages(store)
    revocations = RevocationList(cfg.tls.revoked)
    gate = PeerGate(revocations)
    replica = Replica(cfg.identity, store, keyring_for(cfg.tls), revocations, ack_flush_s=cfg.timing.ack_flush_s)
    topology = Topology.of(cfg.regions, cfg.guests)
    stop = threading.Event()
    link: Link | None = None
    # A regional hub shares its one stream up to the national hub per origin (hub.share).
    share = UpstreamShare(lambda: link is not None and upstream_up(link.state.hub, link.state.down_since_ms,
                                                                     now_ms())) if cfg.upstream else None
    federation = FederationServicer(replica, cfg.name, topology, stop, gate, relay, share, serving)
    if cfg.upstream is not None:
        upstream = cfg.upstream.identity

        def upward(after: int, limit: int) -> tuple[list[LogEntry], int]:
            # core.routing.pushes_upstream, as a query: everything but what came down from upstream.
            return store.read_log(after, not_via=upstream, limit=limit)

        link = Link(replica, [cfg.upstream], cfg.tls, source=upward, push_cursor="push", for_province=None, stop=stop,
                    report=federation.upward_report, on_push_ack=share.acked if share else None, timing=cfg.timing,
                    receipts_out=federation.upward_receipts, on_receipt=federation.receipts.put)

    admin = AdminServicer(store, cfg.name,
                          lambda: hub_status(store, cfg.name, topology, federation.snapshot(),
                                             link.state if link else None, federation.desk.rows(),
                                             federation.desk.refused_counts(), federation.desk.hub_claims(),
                                             share.report() if share else None, cfg.timing.online_s,
                                             acks=replica.acks),
                          None, gate,
                          certificates=CertificateDesk(store, document_verifier(cfg.tls.ca.read_bytes(),
                                                                                revocations.tokens)),
                          arrivals=replica.arrivals)

    def register(server: grpc.Server) -> None:
        federation_pb2_grpc.add_FederationServicer_to_server(federation, server)
        admin_pb2_grpc.add_AdminServicer_to_server(admin, server)

    slots = Slots(cfg.name, revocations)
    server, _health = build_server(cfg.listen, cfg.tls, register, slots=slots, timing=cfg.timing)
    slots.start_sweeper(stop, cfg.timing.sweep_s)
    serve_metrics(cfg.listen, cfg.metrics_port,
                  lambda: hub_status(store, cfg.name, topology, federation.snapshot(), link.state if link else None,
                                     federation.desk.rows(), federation.desk.refused_counts(),
                                     federation.desk.hub_claims(), share.report() if share else None,
                                     cfg.timing.online_s, acks=replica.acks))
    if link is not None:
        link.start()
    run_until_signal(server, stop, replica.close)
