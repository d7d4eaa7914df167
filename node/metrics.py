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
CHANGES_OUT = Counter("yipanqi_changes_out_total", "Changes sent, by the peer they went to", ["peer"])
LOCAL_WRITES = Counter("yipanqi_local_writes_total", "Changes written by operators on this node", ["op"])
APPLY_SECONDS = Histogram("yipanqi_apply_seconds", "Time to check and apply one received batch",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class StatusCollector(Collector):
    """Gauges from the live status report."""

    def __init__(self, status: Callable[[], dict]) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        doc = self.status()
        if doc["role"] == "node":
            yield GaugeMetricFamily("yipanqi_outbox_changes", "Own changes not yet acknowledged by a hub",
                                    value=doc["outbox"]["changes"])
            yield GaugeMetricFamily("yipanqi_conflicts", "Records with open conflicts", value=doc["conflicts"])
            yield GaugeMetricFamily("yipanqi_records", "Records held", value=doc["records"])
            yield GaugeMetricFamily("yipanqi_hub_connected", "1 if connected to a hub",
                                    value=1 if doc["hub"] and doc["hub"]["connected"] else 0)
            lag = GaugeMetricFamily("yipanqi_lag_seconds", "Write-to-arrival delay of the last change per origin",
                                    labels=["origin"])
            for origin, row in doc["origins"].items():
                if row["lag_s"] is not None:
                    lag.add_metric([origin], row["lag_s"])
            yield lag
        else:
            queue = GaugeMetricFamily("yipanqi_queue_changes", "Changes waiting per destination", labels=["peer"])
            age = GaugeMetricFamily("yipanqi_queue_oldest_seconds", "Age of the oldest waiting change",
                                    labels=["peer"])
            for row in doc["destinations"]:
                queue.add_metric([row["peer"]], row["queue"])
                if row["oldest_age_s"] is not None:
                    age.add_metric([row["peer"]], row["oldest_age_s"])
            yield queue
            yield age
            if "records" in doc:
                yield GaugeMetricFamily("yipanqi_records", "Records held", value=doc["records"])
                yield GaugeMetricFamily("yipanqi_conflicts", "Records with open conflicts", value=doc["conflicts"])
        yield GaugeMetricFamily("yipanqi_quarantine_size", "Changes in quarantine", value=doc["quarantined"])


def serve_metrics(listen: str, port: int | None, status: Callable[[], dict]) -> None:
    if port is None:
        return
    REGISTRY.register(StatusCollector(status))
    host = listen.rpartition(":")[0] or "127.0.0.1"
    start_http_server(port, addr=host)
