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
from runtime.receipts import ReceiptDesk
from runtime.replica import Replica, now_ms
from runtime import clock
from runtime.clock import today
from runtime.records import RecordService
from node.refollow import Refollow
from runtime.serve import build_server, keyring_for, run_until_signal, setup_logging
from node.status import node_report, node_status
from store.health import Health
from store.store import Store
from yipanqi.v2 import admin_pb2_grpc, federation_pb2

log = logging.getLogger("yipanqi.node")


def _person_secret(cfg: NodeConfig) -> bytes:
    from certs.secret import read

    if cfg.federation_secret is None:
        raise SystemExit(f"{cfg.path}: [node].federation_secret: missing")
    try:
        return read(cfg.federation_secret, "[node].federation_secret")
    except ValidationError as err:
        raise SystemExit(f"{cfg.path}: {err}") from None


def _alerts(desk: ReceiptDesk, stop: threading.Event) -> None:
    """Every second: destinations whose oldest own change is unreceipted past the alert delay are
    raised (logged once, counted in /metrics; status shows them). Re-sending through the fallback
    hub is not done yet: the alert names the hub that had custody."""
    while not stop.wait(1.0):
        if not desk.store.health.ok:
            continue  # the store's outage is shown and retried elsewhere; alerts wait for it
        try:
            desk.tick()
        except Exception as err:  # noqa: BLE001 - a store outage is shown elsewhere; alerts go on
            log.debug("receipt alerts: %s", type(err).__name__)


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

    desk = ReceiptDesk(store, replica, signer, alert_s=cfg.timing.receipt_alert_s, now_ms=now_ms)

    def receipts_out() -> list[federation_pb2.Receipt]:  # ours, signed, for the origins (issue 17)
        return [federation_pb2.Receipt(body=r.body, key_id=r.key_id, signature=r.signature,
                                       certificate=signer.cert_der, origin=r.origin) for r in desk.outgoing()]

    def on_receipt(r: federation_pb2.Receipt) -> None:  # a destination's, about us: verified, then settles
        desk.receive(r.body, r.key_id, r.signature, r.certificate or None)

    link = Link(replica, cfg.hubs, cfg.tls, source=store.outbox_page, push_cursor="push", for_province=cfg.province, stop=stop,
                report=lambda: reports.sign(signer, node_report(store, acks=replica.acks,  # signed: no hub can alter it
                                                                arrivals=replica.arrivals)),
                timing=cfg.timing, receipts_out=receipts_out, on_receipt=on_receipt)
    threading.Thread(target=_alerts, args=(desk, stop), name="receipt-alerts", daemon=True).start()
    records = RecordService(replica, signer, today=today, person_secret=person_secret)
    replica.after_ingest = Refollow(records)  # followers a move missed (a province writes; hubs never do this)
    certificates = CertificateDesk(store, document_verifier(cfg.tls.ca.read_bytes(), revocations.tokens), records,
                                   signer)

    def status() -> dict[str, object]:
        return node_status(store, link.state, acks=replica.acks, receipt_alert_s=cfg.timing.receipt_alert_s)

    admin = AdminServicer(store, cfg.province, status, records,
                          PeerGate(revocations), certificates=certificates, arrivals=replica.arrivals)
    slots = Slots(cfg.province, revocations)
    server, _health = build_server(cfg.listen, cfg.tls,
                                   lambda s: admin_pb2_grpc.add_AdminServicer_to_server(admin, s), slots=slots,
                                   timing=cfg.timing)
    slots.start_sweeper(stop, cfg.timing.sweep_s)
    serve_metrics(cfg.listen, cfg.metrics_port, status)
    link.start()
    run_until_signal(server, stop, replica.close)
