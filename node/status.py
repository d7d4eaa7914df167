"""A province node's status report, and what it tells its hub about itself.

Field names here are a documented contract for scripts and monitoring.

Status must still answer while our own store is down (that is when operators
look): the figures read from the store are then ``None`` (``origins`` empty),
and the ``store`` section says why.
"""

from __future__ import annotations

from core.errors import StoreUnavailable
from core.identity import Identity
from runtime.acks import AckBook
from runtime.config import PRODUCTION_TIMING
from runtime.link import LinkState
from runtime.outage import store_report
from runtime.receipts import gaps_report, owed_report
from runtime.replica import now_ms
from runtime.stats import Arrivals
from runtime.status import age_s, link_report, parked_report, quarantine_report
from store.store import Store


def node_status(store: Store, link: LinkState | None, *, acks: AckBook | None = None,
                receipt_alert_s: float = PRODUCTION_TIMING.receipt_alert_s) -> dict[str, object]:
    """``acks``: the process's noted acknowledgements (runtime.acks), so "acked_seq" is the hub's
    latest ack even before it is written; without it, the stored cursor. "receipts" (own changes a
    destination has not receipted yet, flagged "alert" past ``receipt_alert_s``) and "gaps" (changes
    meant for us that never arrived) are there only when not empty (runtime.receipts)."""
    now = now_ms()
    doc: dict[str, object] = {"role": "node", "identity": store.owner}
    try:
        acked = (acks or store).cursor("push")
        backlog, oldest = store.outbox_stats(acked)
        origins = {
            origin: {"last_seq": seq, "last_write_ms": at, "received_ms": rcv, "lag_s": age_s(at, rcv)}
            for origin, (seq, at, rcv) in sorted(store.last_applied().items())
            if origin != store.owner
        }
        doc.update({
            "records": store.count_records(),
            "last_seq": store.last_seq(),
            "acked_seq": acked,
            # Changes our hub acknowledged as quarantined: past acked_seq, yet never delivered.
            "outbox": {"changes": backlog, "oldest_age_s": age_s(oldest, now),
                       "quarantined": store.upstream_quarantined()},
            "origins": origins,
            "conflicts": store.count_records(conflicted_only=True),
            "quarantined": store.count_quarantined(),
            "quarantine": quarantine_report(store),
            "equivocating": store.equivocating(),
            "parked": parked_report(store, now),
            "requests": _requests(store),
        })
        owed, gaps = owed_report(store, now, receipt_alert_s), gaps_report(store)
        if owed:
            doc["receipts"] = owed
        if gaps:
            doc["gaps"] = gaps
    except StoreUnavailable:  # shown in doc["store"]
        doc.update({"records": None, "last_seq": None, "acked_seq": None,
                    "outbox": {"changes": None, "oldest_age_s": None, "quarantined": None}, "origins": {},
                    "conflicts": None, "quarantined": None, "quarantine": None, "equivocating": None,
                    "parked": None, "requests": None})
    doc["hub"] = link_report(link, now)
    doc["store"] = store_report(store)
    return doc


def _requests(store: Store) -> dict[str, int]:
    """Open and overdue requests both ways: received_open, received_overdue, sent_open, sent_overdue."""
    from runtime.assess import request_counts
    from runtime.clock import today

    return request_counts(store, Identity.parse(store.owner).name, today())  # a node: its province code


def node_report(store: Store, *, acks: AckBook | None = None, arrivals: Arrivals | None = None) -> dict[str, object]:
    """What a node tells its hub about itself every few seconds (see Report in federation.proto);
    the node signs it (runtime.reports.sign) and ``at_ms`` is its signed report time. ``arrivals``:
    what this process received (runtime.stats), for "delivery"."""
    from runtime.stats import delivery_delays

    doc = node_status(store, None, acks=acks)
    lags = [o["lag_s"] for o in doc["origins"].values() if o["lag_s"] is not None]  # type: ignore[attr-defined]  # node_status: a dict of dicts
    return {
        "at_ms": now_ms(),
        "records": doc["records"],
        "last_seq": doc["last_seq"],
        "acked_seq": doc["acked_seq"],
        "backlog": doc["outbox"]["changes"],  # type: ignore[index]  # node_status: a dict
        "oldest_age_s": doc["outbox"]["oldest_age_s"],  # type: ignore[index]  # as above
        "max_lag_s": max(lags) if lags else None,
        "conflicts": doc["conflicts"],
        "quarantined": doc["quarantined"],
        "delivery": delivery_delays(arrivals, last=2000),
    }


__all__ = ["node_report", "node_status"]
