"""Sync status reports for nodes and hubs, as plain JSON-able dicts.

Field names here are a documented contract for scripts and monitoring.
"""

from __future__ import annotations

from typing import Mapping

from core.routing import Filter, Topology
from node.link import LinkState
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


def node_status(store: Store, link: LinkState | None) -> dict[str, object]:
    now = now_ms()
    acked = store.cursor("push")
    backlog, oldest = store.outbox_stats(acked)
    origins = {
        origin: {"last_seq": seq, "last_write_ms": at, "received_ms": rcv, "lag_s": _age_s(at, rcv)}
        for origin, (seq, at, rcv) in sorted(store.last_applied().items())
        if origin != store.owner
    }
    return {
        "role": "node",
        "identity": store.owner,
        "records": store.count_records(),
        "last_seq": store.last_seq(),
        "acked_seq": acked,
        "outbox": {"changes": backlog, "oldest_age_s": _age_s(oldest, now)},
        "origins": origins,
        "conflicts": store.count_records(conflicted_only=True),
        "quarantined": store.count_quarantined(),
        "hub": link_report(link, now),
    }


def hub_status(store: Store, hub: str, topology: Topology, connected: Mapping[str, Mapping[str, int]],
               upstream: LinkState | None) -> dict[str, object]:
    now = now_ms()
    expected = [f"province-{p}" for p in sorted(topology.served_by(hub))]
    if hub == "national":
        expected = [f"hub-{r}" for r in sorted(topology.regions)] + expected
    cursors = store.cursors("out:")
    peers = list(dict.fromkeys(expected + [c[4:] for c in cursors] + list(connected)))
    rows = []
    for peer in peers:
        flt = topology.subscription(hub, peer)
        acked, acked_ms = cursors.get(f"out:{peer}", (0, None))
        queue, oldest = store.pending(acked, flt=flt) if flt else (0, None)
        conn = connected.get(peer, {})
        last = max([v for v in conn.values()] + [acked_ms or 0]) or None
        if peer.startswith("province-") and hub == "national" and peer not in connected and f"out:{peer}" not in cursors:
            continue  # provinces reach the national hub only as a fallback; list those that did
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
    return report


__all__ = ["node_status", "hub_status", "Filter"]
