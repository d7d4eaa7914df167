"""Equivocation evidence: every digest of an (origin, seq) its origin signed more than once.

How this works. The intake plan (core.intakeplan) reports each (origin, seq) to which a batch
adds a second (or further) digest. Both changes are logged and merged as concurrent writes;
here one row per digest records that this replica saw them, and when, so ``status`` flags
the origin and the national hub keeps the pair (the signed bodies are in the log under those
digests). Functions take an open connection; the Store decides transactions.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import and_, func, select

from core.intakeplan import Twins
from store.db import insert_rows
from store.schema import equivocations, log


def note(conn, twins: Iterable[Twins], now_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Record the digests of ``twins`` not recorded yet."""
    rows = []
    for t in twins:
        q = select(equivocations.c.digest).where(and_(equivocations.c.origin == t.origin,
                                                      equivocations.c.seq == t.seq))
        known = {bytes(d) for (d,) in conn.execute(q)}
        rows += [(t.origin, t.seq, d, now_ms) for d in sorted(t.digests - known)]
    if rows:
        insert_rows(conn, equivocations, ("origin", "seq", "digest", "first_seen_ms"), rows)


def by_origin(conn) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """{origin: {"seq": its first equivocating seq, "first_seen_ms", "seqs": how many}}."""
    q = (select(equivocations.c.origin, func.min(equivocations.c.seq), func.min(equivocations.c.first_seen_ms),
                func.count(equivocations.c.seq.distinct()))
         .group_by(equivocations.c.origin).order_by(equivocations.c.origin))
    return {origin: {"seq": int(seq), "first_seen_ms": int(at), "seqs": int(n)} for origin, seq, at, n in conn.execute(q)}


def listing(conn, limit: int = 1000) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Each (origin, seq) with its digests (hex) and the log entries (lsn) that hold the bodies."""
    q = (select(equivocations.c.origin, equivocations.c.seq, equivocations.c.digest,
                equivocations.c.first_seen_ms, log.c.lsn)
         .join_from(equivocations, log, and_(log.c.origin == equivocations.c.origin, log.c.seq == equivocations.c.seq,
                                              log.c.digest == equivocations.c.digest), isouter=True)
         .order_by(equivocations.c.origin, equivocations.c.seq, equivocations.c.digest).limit(limit))
    out: dict[tuple[str, int], dict[str, object]] = {}
    for origin, seq, digest, at, lsn in conn.execute(q):
        item = out.setdefault((origin, int(seq)), {"origin": origin, "seq": int(seq), "first_seen_ms": int(at),
                                                   "changes": []})
        item["first_seen_ms"] = min(int(at), int(item["first_seen_ms"]))  # type: ignore[call-overload]  # values are ints here; the dict is JSON-shaped
        item["changes"].append({"digest": bytes(digest).hex(), "lsn": lsn})  # type: ignore[attr-defined]
    return list(out.values())
