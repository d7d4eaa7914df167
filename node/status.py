"""Sync status reports for nodes and hubs, as plain JSON-able dicts.

Field names here are a documented contract for scripts and monitoring.

Status must still answer while our own store is down (that is when operators
look): the figures read from the store are then ``None`` (``origins`` empty,
``destinations`` without queues), and the ``store`` section says why.
"""

from __future__ import annotations

from typing import Mapping

from core.errors import StoreUnavailable
from core.routing import Filter, Topology
from node.link import LinkState
from node.outage import store_report
from node.peer import now_ms
from store.store import Store


def _age_s(ms: int | None, now: int) -> float | None:
    return None if ms is None else round(max(0, now - ms) / 1000, 3)


def link_report(state: LinkState | None, now: int) -> dict[str, object] | None:
    if state is None:
        return None
    return {
        "connected": state.hub is not None,
        "hub": state.hub,
        "home": state.home,
        "fallback": state.fallback,
        "up_since_ms": state.up_since_ms,
        "down_since_ms": state.down_since_ms,
        "last_error": state.last_error,
    }


def quarantine_report(store: Store) -> dict[str, object]:
    """Per charged party: what it holds in quarantine (rows, bytes) and what was dropped over its cap."""
    shares = store.quarantine_shares()
    return {
        "held": {party: {"rows": s["rows"], "bytes": s["bytes"]} for party, s in shares.items()},
        "dropped": {party: s["dropped"] for party, s in shares.items() if s["dropped"]},
    }


def node_status(store: Store, link: LinkState | None) -> dict[str, object]:
    now = now_ms()
    doc: dict[str, object] = {"role": "node", "identity": store.owner}
    try:
        acked = store.cursor("push")
        backlog, oldest = store.outbox_stats(acked)
        origins = {
            origin: {"last_seq": seq, "last_write_ms": at, "received_ms": rcv, "lag_s": _age_s(at, rcv)}
            for origin, (seq, at, rcv) in sorted(store.last_applied().items())
            if origin != store.owner
        }
        doc.update({
            "records": store.count_records(),
            "last_seq": store.last_seq(),
            "acked_seq": acked,
            "outbox": {"changes": backlog, "oldest_age_s": _age_s(oldest, now)},
            "origins": origins,
            "conflicts": store.count_records(conflicted_only=True),
            "quarantined": store.count_quarantined(),
            "quarantine": quarantine_report(store),
            "requests": _requests(store),
        })
    except StoreUnavailable:  # shown in doc["store"]
        doc.update({"records": None, "last_seq": None, "acked_seq": None,
                    "outbox": {"changes": None, "oldest_age_s": None}, "origins": {},
                    "conflicts": None, "quarantined": None, "quarantine": None,
                    "requests": None})
    doc["hub"] = link_report(link, now)
    doc["store"] = store_report(store)
    return doc


def _requests(store: Store) -> dict[str, int]:
    """Open and overdue requests both ways: received_open, received_overdue, sent_open, sent_overdue."""
    from node.assess import request_counts
    from node.clock import today

    return request_counts(store, store.owner.removeprefix("province-"), today())


def node_report(store: Store) -> dict[str, object]:
    """What a node tells its hub about itself every few seconds (see Report in federation.proto)."""
    from node.stats import delivery_delays

    doc = node_status(store, None)
    lags = [o["lag_s"] for o in doc["origins"].values() if o["lag_s"] is not None]  # type: ignore[union-attr]
    return {
        "at_ms": now_ms(),
        "records": doc["records"],
        "last_seq": doc["last_seq"],
        "acked_seq": doc["acked_seq"],
        "backlog": doc["outbox"]["changes"],  # type: ignore[index]
        "oldest_age_s": doc["outbox"]["oldest_age_s"],  # type: ignore[index]
        "max_lag_s": max(lags) if lags else None,
        "conflicts": doc["conflicts"],
        "quarantined": doc["quarantined"],
        "delivery": delivery_delays(store, last=2000),
    }


def hub_report(store: Store, reports: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """A regional hub's report upward: its own figures plus its nodes' latest reports."""
    return {
        "at_ms": now_ms(),
        "log_lsn": store.last_lsn(),
        "quarantined": store.count_quarantined(),
        "nodes": {k: dict(v) for k, v in reports.items() if k.startswith("province-")},
    }


ONLINE_S = 20.0


def federation_table(store: Store, topology: Topology, reports: Mapping[str, Mapping[str, object]],
                     now: int) -> list[dict[str, object]]:
    """Every province in one table, for the national hub (双向考核 included).

    As sender: how long changes authored by the province took to reach the other
    provinces involved (the median of the receivers' medians, the worst of their
    95th percentiles). As receiver: the province's own view of its incoming delays.
    """
    from statistics import median

    hub_rejects = store.quarantined_by_origin()
    sent: dict[str, list[dict]] = {}
    for report in reports.values():
        for origin, d in (report.get("delivery") or {}).items():  # type: ignore[union-attr]
            if isinstance(d, dict):
                sent.setdefault(origin, []).append(d)
    rows = []
    for region, provinces in sorted(topology.regions.items()):
        for code in sorted(provinces):
            identity = f"province-{code}"
            r = reports.get(identity, {})
            received = r.get("received_ms")
            incoming = [d for d in (r.get("delivery") or {}).values() if isinstance(d, dict)]  # type: ignore[union-attr]
            outgoing = sent.get(identity, [])
            rows.append({
                "province": code,
                "region": region,
                "connected": received is not None and (now - int(received)) / 1000 < ONLINE_S,  # type: ignore[arg-type]
                "last_report_age_s": _age_s(received, now),  # type: ignore[arg-type]
                "via": r.get("via"),
                "records": r.get("records"),
                "backlog": r.get("backlog"),
                "oldest_age_s": r.get("oldest_age_s"),
                "lag_s": r.get("max_lag_s"),
                "conflicts": r.get("conflicts"),
                "rejects": (r.get("quarantined") or 0) + hub_rejects.get(identity, 0),  # type: ignore[operator]
                "delivery_p50_s": median(d["p50_s"] for d in outgoing) if outgoing else None,
                "delivery_p95_s": max(d["p95_s"] for d in outgoing) if outgoing else None,
                "receive_p50_s": median(d["p50_s"] for d in incoming) if incoming else None,
                "receive_p95_s": max(d["p95_s"] for d in incoming) if incoming else None,
            })
    return rows


def hub_status(store: Store, hub: str, topology: Topology, connected: Mapping[str, Mapping[str, int]],
               upstream: LinkState | None, reports: Mapping[str, Mapping[str, object]] | None = None,
               refused_reports: Mapping[str, int] | None = None,
               upstream_share: Mapping[str, Mapping[str, int]] | None = None) -> dict[str, object]:
    now = now_ms()
    try:
        report = _hub_figures(store, hub, topology, connected, upstream, reports, now)
    except StoreUnavailable:  # shown in report["store"]
        report = {"role": "hub", "identity": f"hub-{hub}", "log_lsn": None, "quarantined": None,
                  "quarantine": None, "destinations": [], "upstream": link_report(upstream, now)}
        if upstream is not None:
            report["upstream_queue"] = {"changes": None, "oldest_age_s": None}
        if store.hold_records:
            report["records"] = report["conflicts"] = None
        if hub == "national":
            report["federation"] = []
    report["reports"] = {"refused": dict(sorted((refused_reports or {}).items()))}  # kept in memory, not in the store
    if upstream_share is not None:  # a regional hub: per origin, changes waiting upstream and holds (hub.share)
        report["upstream_share"] = {o: dict(v) for o, v in upstream_share.items()}
    report["store"] = store_report(store)
    return report


def _hub_figures(store: Store, hub: str, topology: Topology, connected: Mapping[str, Mapping[str, int]],
                 upstream: LinkState | None, reports: Mapping[str, Mapping[str, object]] | None,
                 now: int) -> dict[str, object]:
    expected = [f"province-{p}" for p in sorted(topology.served_by(hub))]
    if hub == "national":
        expected = [f"hub-{r}" for r in sorted(topology.regions)] + expected
    cursors = store.cursors("out:")
    peers = list(dict.fromkeys(expected + [c[4:] for c in cursors] + list(connected)))
    rows = []
    for peer in peers:
        conn = connected.get(peer, {})
        if peer.startswith("province-") and hub == "national" and not ("pull" in conn or "push" in conn):
            # Provinces reach the national hub only as a fallback, and get everything through their
            # home hub otherwise: a queue here is not a backlog. List only those on it right now.
            continue
        flt = topology.subscription(hub, peer)
        acked, acked_ms = cursors.get(f"out:{peer}", (0, None))
        queue, oldest = store.pending(acked, flt=flt) if flt else (0, None)
        last = max([v for v in conn.values()] + [acked_ms or 0]) or None
        rows.append({
            "peer": peer,
            "connected": "pull" in conn or "push" in conn,
            "acked": acked,
            "queue": queue,
            "oldest_age_s": _age_s(oldest, now),
            "last_contact_ms": last,
        })
    report: dict[str, object] = {
        "role": "hub",
        "identity": f"hub-{hub}",
        "log_lsn": store.last_lsn(),
        "quarantined": store.count_quarantined(),
        "quarantine": quarantine_report(store),
        "destinations": rows,
        "upstream": link_report(upstream, now),
    }
    if upstream is not None:
        acked = store.cursor("push")
        queue, oldest = store.pending(acked, not_via="hub-national")
        report["upstream_queue"] = {"changes": queue, "oldest_age_s": _age_s(oldest, now)}
    if store.hold_records:
        report["records"] = store.count_records()
        report["conflicts"] = store.count_records(conflicted_only=True)
    if hub == "national":
        report["federation"] = federation_table(store, topology, reports or {}, now)
    return report


__all__ = ["node_status", "hub_status", "Filter"]
