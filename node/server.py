"""A province node process: its store, its link to its hubs, its admin service."""

from __future__ import annotations

import logging
import threading

from certs.revocation import RevocationList
from certs.signing import Signer
from node.transport import PeerGate
from cli.config import NodeConfig
from node.admin import AdminServicer
from node.certificates import CertificateDesk, document_verifier
from node.link import Link
from node.metrics import serve_metrics
from node.peer import Peer
from node.clock import today
from node.records import RecordService
from node.serve import build_server, keyring_for, run_until_signal, setup_logging
from node.status import node_report, node_status
from store.store import Store
from yipanqi.v1 import admin_pb2_grpc

log = logging.getLogger("yipanqi.node")


def run_node(cfg: NodeConfig) -> None:
    setup_logging(cfg.identity, cfg.log_level)
    signer = Signer.load(cfg.signing.key, cfg.signing.cert)
    if signer.identity != cfg.identity:
        raise SystemExit(f"{cfg.path}: [signing].cert is for {signer.identity}, not {cfg.identity}")
    store = Store.open(cfg.database, owner=cfg.identity)
    revocations = RevocationList(cfg.tls.revoked)
    peer = Peer(cfg.identity, store, keyring_for(cfg.tls, signer.cert_der), revocations)
    peer.learn([signer.cert_der])  # kept in the store: after a key rotation our old changes still carry their cert
    stop = threading.Event()

    link = Link(peer, cfg.hubs, cfg.tls, source=store.outbox_page, push_cursor="push", for_province=cfg.province, stop=stop,
                report=lambda: node_report(store))
    records = RecordService(peer, signer, today=today)
    certificates = CertificateDesk(store, document_verifier(cfg.tls.ca.read_bytes(), revocations.tokens), records,
                                   signer)
    admin = AdminServicer(store, cfg.province, lambda: node_status(store, link.state), records,
                          PeerGate(revocations), certificates=certificates)
    server, _health = build_server(cfg.listen, cfg.tls,
                                   lambda s: admin_pb2_grpc.add_AdminServicer_to_server(admin, s), workers=16)
    serve_metrics(cfg.listen, cfg.metrics_port, lambda: node_status(store, link.state))
    link.start()
    run_until_signal(server, stop, store.close)
