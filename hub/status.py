"""A hub's status report, its report upward, and the national hub's table of every province.

Field names here are a documented contract for scripts and monitoring.

Status must still answer while our own store is down (that is when operators
look): the figures read from the store are then ``None`` (``destinations``
without queues), and the ``store`` section says why.
"""

from __future__ import annotations

from typing import Mapping

from core.errors import StoreUnavailable
from core.identity import Identity
from core.routing import Topology
from runtime.acks import AckBook
from runtime.config import PRODUCTION_TIMING
from runtime.link import LinkState
from runtime.outage import store_report
from runtime.receipts import gaps_report
from runtime.replica import now_ms
from runtime.status import age_s, link_report, parked_report, quarantine_report
from store.store import Store


def hub_report(store: Store, signed: list[dict[str, object]]) -> dict[str, object]:
    """A regional hub's report upward: its own figures (its claim) plus its nodes' latest signed
    reports, unchanged (runtime.reports)."""
    return {
        "at_ms": now_ms(),
        "log_lsn": store.last_lsn(),
        "quarantined": store.count_quarantined(),
        "nodes": list(signed),
    }


# A province is "up" while its own signed report time is less than [timing].online_s old (20 s).
# Nodes report every report_every_s (5 s) and a regional hub relays as often: a stopped node is down
# after at most online_s, whatever any hub says (a report time ahead of ours is refused past
# runtime.reports.REPORT_SKEW_MS).
# Figures in a federation row that are the province's own word (its signed report), not counted here.
SELF_REPORTED = ("records", "backlog", "oldest_age_s", "lag_s", "conflicts", "rejects",
                 "receive_p50_s", "receive_p95_s")


def federation_table(store: Store, topology: Topology, reports: Mapping[str, Mapping[str, object]],
                     now: int, online_s: float = PRODUCTION_TIMING.online_s) -> list[dict[str, object]]:
    """Every province in one table, for the national hub (双向考核 included).

    ``reports`` are the provinces' signed reports (runtime.reports.Desk.rows): no hub can write
    one. "connected" and "last_report_age_s" come from the province's own signed report time.
    What the province says about itself is listed in each row's "self_reported"; what this
    hub counts from its own database is "national_records" (the cross-province records it
    holds involving the province) and "national_rejects" (its changes quarantined here).

    As sender: how long changes authored by the province took to reach the other provinces,
    from each receiver's signed report of its own arrivals (the median of the receivers'
    medians, the worst of their 95th percentiles; "delivery_p95_by" names the receiver that
    reported that worst figure, "delivery_reported_by" every receiver counted). As receiver:
    the province's own signed view of its incoming delays.
    """
    from statistics import median

    hub_rejects = store.quarantined_by_origin()
    involved: dict[str, int] = {}
    if store.hold_records:
        for h, res, n in store.migrant_pairs():  # running totals: status stays O(1) in the store's size
            for code in {h, res}:
                involved[code] = involved.get(code, 0) + n
    sent: dict[str, list[tuple[str, dict]]] = {}
    for receiver, report in sorted(reports.items()):
        for origin, d in (report.get("delivery") or {}).items():  # type: ignore[attr-defined]  # a signed report's delivery is a dict
            if isinstance(d, dict) and origin != receiver:
                sent.setdefault(origin, []).append((receiver, d))
    rows = []
    for region, provinces in sorted(topology.regions.items()):
        for code in sorted(provinces):
            identity = str(Identity.for_province(code))
            r = reports.get(identity, {})
            at = r.get("at_ms")
            incoming = [d for d in (r.get("delivery") or {}).values() if isinstance(d, dict)]  # type: ignore[attr-defined]  # as above
            outgoing = sent.get(identity, [])
            worst = max(outgoing, key=lambda rd: rd[1]["p95_s"]) if outgoing else None
            rows.append({
                "province": code,
                "region": region,
                "connected": at is not None and (now - int(at)) / 1000 < online_s,  # type: ignore[call-overload]  # at_ms: an int
                "last_report_age_s": age_s(at, now),  # type: ignore[arg-type]  # at_ms: an int or None
                "via": r.get("via"),
                "records": r.get("records"),
                "backlog": r.get("backlog"),
                "oldest_age_s": r.get("oldest_age_s"),
                "lag_s": r.get("max_lag_s"),
                "conflicts": r.get("conflicts"),
                "rejects": (r.get("quarantined") or 0) + hub_rejects.get(identity, 0),  # type: ignore[operator]  # a report's count: an int
                "delivery_p50_s": median(d["p50_s"] for _, d in outgoing) if outgoing else None,
                "delivery_p95_s": worst[1]["p95_s"] if worst else None,
                "receive_p50_s": median(d["p50_s"] for d in incoming) if incoming else None,
                "receive_p95_s": max(d["p95_s"] for d in incoming) if incoming else None,
                "self_reported": list(SELF_REPORTED) if r else [],
                "national_records": involved.get(code, 0) if store.hold_records else None,
                "national_rejects": hub_rejects.get(identity, 0),
                "delivery_p95_by": worst[0] if worst else None,
                "delivery_reported_by": [who for who, _ in outgoing],
            })
    return rows


def hub_claims(claims: Mapping[str, Mapping[str, object]], now: int) -> list[dict[str, object]]:
    """What each regional hub says of itself in its reports: its claim (over its TLS identity),
    not verified by anyone and shown as such."""
    return [{"hub": who, "claim": True, "log_lsn": c.get("log_lsn"), "quarantined": c.get("quarantined"),
             "claimed_at_ms": c.get("at_ms"), "last_report_age_s": age_s(c.get("received_ms"), now)}  # type: ignore[arg-type]  # an int or None
            for who, c in sorted(claims.items())]


def hub_status(store: Store, hub: str, topology: Topology, connected: Mapping[str, Mapping[str, int]],
               upstream: LinkState | None, reports: Mapping[str, Mapping[str, object]] | None = None,
               refused_reports: Mapping[str, int] | None = None,
               claims: Mapping[str, Mapping[str, object]] | None = None,
               upstream_share: Mapping[str, Mapping[str, int]] | None = None,
               online_s: float = PRODUCTION_TIMING.online_s, acks: AckBook | None = None) -> dict[str, object]:
    """``acks``: the process's noted acknowledgements (runtime.acks), so a destination's "acked" is
    the latest ack even before it is written; without it, the stored cursors."""
    now = now_ms()
    try:
        report = _hub_figures(store, hub, topology, connected, upstream, reports, now, online_s, acks)
    except StoreUnavailable:  # shown in report["store"]
        report = {"role": "hub", "identity": str(Identity.for_hub(hub)), "log_lsn": None, "quarantined": None,
                  "quarantine": None, "equivocating": None, "equivocations": None, "destinations": [],
                  "upstream": link_report(upstream, now)}
        if upstream is not None:
            report["upstream_queue"] = {"changes": None, "oldest_age_s": None}
        if store.hold_records:
            report["records"] = report["conflicts"] = None
        if hub == "national":
            report["federation"] = []
    report["reports"] = {"refused": dict(sorted((refused_reports or {}).items()))}  # kept in memory, not in the store
    if upstream_share is not None:  # a regional hub: per origin, changes waiting upstream and holds (hub.share)
        report["upstream_share"] = {o: dict(v) for o, v in upstream_share.items()}
    if hub == "national":
        report["hub_claims"] = hub_claims(claims or {}, now)
    report["store"] = store_report(store)
    return report


def _hub_figures(store: Store, hub: str, topology: Topology, connected: Mapping[str, Mapping[str, int]],
                 upstream: LinkState | None, reports: Mapping[str, Mapping[str, object]] | None,
                 now: int, online_s: float, acks: AckBook | None) -> dict[str, object]:
    expected = [str(Identity.for_province(p)) for p in sorted(topology.served_by(hub))]
    if hub == "national":
        expected = [str(Identity.for_hub(r)) for r in sorted(topology.regions)] + expected
    cursors = (acks or store).cursors("out:")
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
            "oldest_age_s": age_s(oldest, now),
            "last_contact_ms": last,
        })
    report: dict[str, object] = {
        "role": "hub",
        "identity": str(Identity.for_hub(hub)),
        "log_lsn": store.last_lsn(),
        "quarantined": store.count_quarantined(),
        "quarantine": quarantine_report(store),
        "equivocating": store.equivocating(),
        "equivocations": store.equivocation_evidence(limit=100),  # the pairs, kept; bodies in the log
        "parked": parked_report(store, now) if store.hold_records else None,  # deltas waiting for their history
        "destinations": rows,
        "upstream": link_report(upstream, now),
    }
    if upstream is not None:
        acked = (acks or store).cursor("push")
        queue, oldest = store.pending(acked, not_via="hub-national")
        report["upstream_queue"] = {"changes": queue, "oldest_age_s": age_s(oldest, now)}
    if store.hold_records:
        report["records"] = store.count_records()
        report["conflicts"] = store.count_records(conflicted_only=True)
    if hub == "national":
        report["federation"] = federation_table(store, topology, reports or {}, now, online_s)
        gaps = gaps_report(store)  # the national hub is a destination of every shared change (issue 17)
        if gaps:
            report["gaps"] = gaps
    return report


__all__ = ["federation_table", "hub_claims", "hub_report", "hub_status"]
