"""A province node process: its store, its link to its hubs, its admin service."""

from __future__ import annotations

import logging
import threading

from certs.revocation import RevocationList
from core.errors import StoreUnavailable, ValidationError
from certs.signing import Signer
from runtime.transport import PeerGate
from runtime.config import NodeConfig
from runtime.admin import AdminServicer
from runtime.certificates import CertificateDesk, document_verifier
from runtime.link import Link
from runtime.metrics import serve_metrics
from runtime.outage import log_outages
from runtime.fairshare import Slots
from runtime import reports
from runtime.replica import Replica
from runtime import clock
from runtime.clock import today
from runtime.records import RecordService
from node.refollow import Refollow
from runtime.serve import build_server, keyring_for, run_until_signal, setup_logging
from node.status import node_report, node_status
from store.health import Health
from store.store import Store
from yipanqi.v1 import admin_pb2_grpc

log = logging.getLogger("yipanqi.node")


def _person_secret(cfg: NodeConfig) -> bytes:
    from certs.secret import read

    if cfg.federation_secret is None:
        raise SystemExit(f"{cfg.path}: [node].federation_secret: missing")
    try:
        return read(cfg.federation_secret, "[node].federation_secret")
    except ValidationError as err:
        raise SystemExit(f"{cfg.path}: {err}") from None


def run_node(cfg: NodeConfig) -> None:
    setup_logging(cfg.identity, cfg.log_level)
    clock.set_offset(cfg.timing.clock_offset_s)  # before anything reads the wall clock
    signer = Signer.load(cfg.signing.key, cfg.signing.cert)
    person_secret = _person_secret(cfg)
    if signer.identity != cfg.identity:
        raise SystemExit(f"{cfg.path}: [signing].cert is for {signer.identity}, not {cfg.identity}")
    try:
        store = Store.open(cfg.database, owner=cfg.identity, person_secret=person_secret, upgraded=log.info,
                           health=Health(clock.now_ms))
    except StoreUnavailable as err:  # one line, no traceback; systemd restarts us later
        raise SystemExit(f"{cfg.path}: [node].database: the store is unavailable: {err}") from None
    log_outages(store)
    revocations = RevocationList(cfg.tls.revoked)
    replica = Replica(cfg.identity, store, keyring_for(cfg.tls, signer.cert_der), revocations,
                      ack_flush_s=cfg.timing.ack_flush_s)
    replica.learn([signer.cert_der])  # kept in the store: after a key rotation our old changes still carry their cert
    stop = threading.Event()

    link = Link(replica, cfg.hubs, cfg.tls, source=store.outbox_page, push_cursor="push", for_province=cfg.province, stop=stop,
                report=lambda: reports.sign(signer, node_report(store, acks=replica.acks,  # signed: no hub can alter it
                                                                arrivals=replica.arrivals)),
                timing=cfg.timing)
    records = RecordService(replica, signer, today=today, person_secret=person_secret)
    replica.after_ingest = Refollow(records)  # followers a move missed (a province writes; hubs never do this)
    certificates = CertificateDesk(store, document_verifier(cfg.tls.ca.read_bytes(), revocations.tokens), records,
                                   signer)
    admin = AdminServicer(store, cfg.province, lambda: node_status(store, link.state, acks=replica.acks), records,
                          PeerGate(revocations), certificates=certificates, arrivals=replica.arrivals)
    slots = Slots(cfg.province, revocations)
    server, _health = build_server(cfg.listen, cfg.tls,
                                   lambda s: admin_pb2_grpc.add_AdminServicer_to_server(admin, s), slots=slots,
                                   timing=cfg.timing)
    slots.start_sweeper(stop, cfg.timing.sweep_s)
    serve_metrics(cfg.listen, cfg.metrics_port, lambda: node_status(store, link.state, acks=replica.acks))
    link.start()
    run_until_signal(server, stop, replica.close)
