"""Prometheus metrics for nodes and hubs, served over HTTP on [node|hub].metrics_port.

Counters are bumped where the work happens; gauges (queues, lag, conflicts)
are read from the status report at scrape time, so they are never stale.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CHANGES_IN = Counter("yipanqi_changes_in_total", "Changes accepted and applied, by the peer they came from", ["peer"])
DUPLICATES = Counter("yipanqi_duplicates_total", "Changes received again and ignored (idempotent apply)", ["peer"])
QUARANTINED = Counter("yipanqi_quarantined_total", "Changes refused and quarantined, by reason", ["reason"])
QUARANTINE_DROPPED = Counter("yipanqi_quarantine_dropped_total",
                             "Refused changes counted but not kept: their party's quarantine share was full")
UPSTREAM_SHARE_WAITS = Counter("yipanqi_upstream_share_waits_total",
                               "Times a province's Push stream was held at its share of the upstream queue "
                               "(regional hubs, hub.share)", ["origin"])
RECEIPT_ALERTS = Counter("yipanqi_receipt_alerts_total", "Alerts raised: a destination's oldest own change went "
                         "unreceipted past [timing].receipt_alert_s, by destination and the hub that had custody "
                         "(runtime.receipts)", ["destination", "via"])
FETCHED = Counter("yipanqi_fetched_total", "Deltas given to a province that fetched what it waits for, by peer",
                  ["peer"])
FETCHES = Counter("yipanqi_fetches_total", "Fetches of missing dependencies this node made, by outcome", ["outcome"])
RECEIPTS_DROPPED = Counter("yipanqi_receipts_dropped_total", "Receipts a hub did not carry: not the pushing "
                           "node's own, about no province, or too big", ["peer"])
CHANGES_OUT = Counter("yipanqi_changes_out_total", "Changes sent, by the peer they went to", ["peer"])
LOCAL_WRITES = Counter("yipanqi_local_writes_total", "Changes written by operators on this node", ["op"])
APPLY_SECONDS = Histogram("yipanqi_apply_seconds", "Time to check and apply one received batch",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily | None:
    return None if value is None else GaugeMetricFamily(name, doc, value=value)


def _link_up(link: dict, kind: str, links: GaugeMetricFamily) -> Iterator[GaugeMetricFamily]:
    """A node's link to its hub (``kind`` "hub") or a regional hub's to the national hub ("upstream"):
    its sample in ``links``, plus ``yipanqi_hub_connected`` and ``yipanqi_link_fallback``."""
    links.add_metric([kind, f"hub-{link['hub'] or link['home']}"], 1 if link["connected"] else 0)
    yield GaugeMetricFamily("yipanqi_hub_connected", "1 if connected to a hub (a node's hub, a regional "
                            "hub's national hub)", value=1 if link["connected"] else 0)
    fallback = GaugeMetricFamily("yipanqi_link_fallback", "1 if the link is on a fallback hub", labels=["link"])
    fallback.add_metric([kind], 1 if link["fallback"] else 0)
    yield fallback


class StatusCollector(Collector):
    """Gauges from the live status report. Figures the store cannot give right now (it is
    down: see ``yipanqi_store_up``) are left out rather than reported as zero."""

    def __init__(self, status: Callable[[], dict]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        doc = self.status()
        store = doc.get("store") or {}
        yield GaugeMetricFamily("yipanqi_store_up", "1 if this process's own database is usable",
                                value=1 if store.get("ok", True) else 0)
        queue = GaugeMetricFamily("yipanqi_queue_changes", "Changes waiting to be sent, per peer "
                                  "(for a regional hub, peer hub-national is its upstream queue)", labels=["peer"])
        age = GaugeMetricFamily("yipanqi_queue_oldest_seconds", "Age of the oldest waiting change, per peer; "
                                "0 when the queue is empty", labels=["peer"])
        links = GaugeMetricFamily("yipanqi_link_connected", "1 if the link is up", labels=["link", "peer"])
        if doc["role"] == "node":
            outbox = doc["outbox"]
            found = [_gauge("yipanqi_outbox_changes", "Own changes not yet acknowledged by a hub", outbox["changes"]),
                     _gauge("yipanqi_outbox_oldest_seconds", "Age of the oldest change not yet acknowledged "
                            "by a hub; 0 when the outbox is empty",
                            None if outbox["changes"] is None else outbox["oldest_age_s"] or 0),
                     _gauge("yipanqi_outbox_quarantined", "Own changes a hub acknowledged as quarantined "
                            "(never delivered)", (outbox.get("quarantined") or {}).get("changes")),
                     _gauge("yipanqi_conflicts", "Records with open conflicts", doc["conflicts"]),
                     _gauge("yipanqi_records", "Records held", doc["records"])]
            yield from (g for g in found if g is not None)
            if doc["hub"] is not None:
                yield from _link_up(doc["hub"], "hub", links)
            lag = GaugeMetricFamily("yipanqi_lag_seconds", "Write-to-arrival delay of the last change per origin",
                                    labels=["origin"])
            for origin, row in doc["origins"].items():
                if row["lag_s"] is not None:
                    lag.add_metric([origin], row["lag_s"])
            yield lag
            owed = doc.get("receipts") or {}  # absent when nothing is owed: the gauge has no samples then
            unreceipted = GaugeMetricFamily("yipanqi_unreceipted_age_seconds", "Age of the oldest own change a "
                                            "destination has not receipted, by destination and the hub that had "
                                            "custody (runtime.receipts)", labels=["destination", "via"])
            for dest, row in owed.items():
                unreceipted.add_metric([dest, row["via"] or "none"], row["oldest_age_s"])
            yield unreceipted
        else:
            for row in doc["destinations"]:
                queue.add_metric([row["peer"]], row["queue"])
                age.add_metric([row["peer"]], row["oldest_age_s"] or 0)
                links.add_metric(["downstream", row["peer"]], 1 if row["connected"] else 0)
            upq = doc.get("upstream_queue")
            if upq is not None and upq["changes"] is not None:
                queue.add_metric(["hub-national"], upq["changes"])
                age.add_metric(["hub-national"], upq["oldest_age_s"] or 0)
            if doc.get("upstream") is not None:
                yield from _link_up(doc["upstream"], "upstream", links)
            if "records" in doc:
                found = [_gauge("yipanqi_records", "Records held", doc["records"]),
                         _gauge("yipanqi_conflicts", "Records with open conflicts", doc["conflicts"])]
                yield from (g for g in found if g is not None)
        yield links
        yield queue
        yield age
        size = _gauge("yipanqi_quarantine_size", "Changes in quarantine", doc["quarantined"])
        if size is not None:
            yield size
        flagged = doc.get("equivocating")
        twins = _gauge("yipanqi_equivocating_origins", "Origins seen signing two different changes with one seq",
                       None if flagged is None else len(flagged))
        if twins is not None:
            yield twins


def serve_metrics(listen: str, port: int | None, status: Callable[[], dict]) -> None:
    """Serve /metrics on ``port`` of the gRPC listen host (IPv4, IPv6 or a name)."""
    if port is None:
        return
    from runtime.serve import bind_failure
    from runtime.transport import split_address

    host = split_address(listen)[0]
    try:
        start_http_server(port, addr=host)
    except OSError:
        shown = f"[{host}]" if ":" in host else host
        raise bind_failure(f"{shown}:{port}", "serve metrics") from None
    REGISTRY.register(StatusCollector(status))
