"""What the status reports of nodes and hubs share: the link, quarantine and age figures.

Field names here are a documented contract for scripts and monitoring. A node's status is
built by node/status.py, a hub's by hub/status.py; both use these pieces, so a link or a
quarantine reads the same in either.
"""

from __future__ import annotations

from runtime.link import LinkState
from store.deltas import ParkedEntry
from store.store import Store


def age_s(ms: int | None, now: int) -> float | None:
    """Seconds from ms to now (never negative), or None when there is no ms."""
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


PARKED_SHOWN = 20


def parked_report(store: Store, now_ms: int) -> dict[str, object]:
    """Verified deltas waiting here for their history (or for the clock: a delta stamped ahead):
    how many, the oldest's age, and the first few with what each waits for (delta ids; no values)."""
    n, oldest = store.count_parked()
    return {"deltas": n, "oldest_age_s": age_s(oldest, now_ms),
            "waiting": [parked_json(e) for e in store.parked_deltas(limit=PARKED_SHOWN)] if n else []}


def parked_json(e: ParkedEntry) -> dict[str, object]:
    return {"delta": e.digest, "kind": e.kind, "record_id": e.record_id, "origin": e.origin, "seq": e.seq,
            "waiting_for": list(e.waiting_for), "via": e.via, "received_ms": e.received_ms}
