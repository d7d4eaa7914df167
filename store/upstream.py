"""What our hub quarantined of our own changes, as its Acks said (issue 10, finding 5).

How this works. A hub acknowledges every pushed batch, quarantined changes included (the
cursor moves past them: they must not be resent for ever). An Ack that counts quarantined
changes also names their seqs and the last refusal's category; the node keeps one row per
such Ack here, so its ``status`` (``outbox.quarantined``) shows them as quarantined
upstream, not as delivered. Functions take an open connection; the Store decides transactions.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import func, insert, select

from store.schema import upstream_quarantine as uq


def add(conn, hub: str, seqs: Sequence[int], changes: int, reason: str, now_ms: int) -> None:  # type: ignore[no-untyped-def]
    conn.execute(insert(uq).values(hub=hub, first_seq=min(seqs) if seqs else None, last_seq=max(seqs) if seqs else None,
                                   changes=changes, reason=reason[:64], at_ms=now_ms))


def summary(conn, ranges: int = 20) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """{"changes": total, "ranges": [[first_seq, last_seq], ...] (of the latest ``ranges`` acks, oldest
    first; an older hub's ack names no seqs and adds no range),
    "last_reason", "last_hub", "last_ms"}; changes 0 and the rest empty when none."""
    total = int(conn.execute(select(func.coalesce(func.sum(uq.c.changes), 0))).scalar() or 0)
    rows = conn.execute(select(uq.c.hub, uq.c.first_seq, uq.c.last_seq, uq.c.reason, uq.c.at_ms)
                        .order_by(uq.c.id.desc()).limit(ranges)).all()
    last = rows[0] if rows else None
    return {
        "changes": total,
        "ranges": [[int(r.first_seq), int(r.last_seq)] for r in reversed(rows) if r.first_seq is not None],
        "last_reason": last.reason if last else None,
        "last_hub": last.hub if last else None,
        "last_ms": int(last.at_ms) if last else None,
    }
