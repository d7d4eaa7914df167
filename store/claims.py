"""Claims held apart from the records (core.claims): keeping, listing and deciding them.

Functions take an open connection; the Store decides transactions. A claim row keeps
the claimer's signed change exactly as received, so accepting it merges those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import and_, insert, select, update
from sqlalchemy import ColumnElement, Connection

import hashlib
from typing import Mapping

from core.change import Change, Envelope, parse
from core.delta import Delta
from core.delta import parse as delta_parse
from core.errors import Malformed
from store import changelog
from store.schema import claims

OPEN, ACCEPTED, MERGED, REFUSED = "open", "accepted", "merged", "refused"


@dataclass(frozen=True, slots=True)
class Claim:
    claim_id: int
    kind: str
    record_id: str
    origin: str
    seq: int
    op: str
    received_ms: int
    status: str
    decided_ms: int | None
    decided_by: str | None

    def to_json(self) -> dict[str, object]:
        return {"claim_id": self.claim_id, "kind": self.kind, "person_id": self.record_id, "claimer": self.origin,
                "seq": self.seq, "op": self.op, "received_ms": self.received_ms, "status": self.status,
                "decided_ms": self.decided_ms, "decided_by": self.decided_by}


def add(conn: Connection, rows: Sequence[tuple[Change, bytes]], now_ms: int) -> None:
    if rows:
        conn.execute(insert(claims), [{"kind": c.kind, "record_id": c.record_id, "origin": c.origin, "seq": c.seq,
                                       "body": body, "received_ms": now_ms, "status": OPEN} for c, body in rows])


def open_by_record(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """{(kind, record_id): claimers with an open claim} for these records."""
    out: dict[tuple[str, str], set[str]] = {}
    ids = sorted({rid for _, rid in keys})
    for i in range(0, len(ids), 500):
        q = select(claims.c.kind, claims.c.record_id, claims.c.origin).where(
            and_(claims.c.status == OPEN, claims.c.record_id.in_(ids[i:i + 500])))
        for kind, rid, origin in conn.execute(q):
            out.setdefault((kind, rid), set()).add(origin)
    return out


def open_changes(conn: Connection, kind: str, record_id: str, origin: str) -> list[tuple[int, Change]]:
    q = select(claims.c.claim_id, claims.c.body).where(and_(
        claims.c.kind == kind, claims.c.record_id == record_id, claims.c.origin == origin,
        claims.c.status == OPEN)).order_by(claims.c.claim_id)
    return [(cid, parse(bytes(body))) for cid, body in conn.execute(q)]


def sync(conn: Connection, kind: str, record_id: str, waiting: Mapping[str, Delta],
         envelopes: Mapping[str, Envelope], now_ms: int, refused: Mapping[str, str] | None = None) -> int:
    """Bring the record's claim rows in line with its graph (v2): each create held apart
    (``waiting``: id -> delta) has an open row, an open row whose create a signed refuse turned
    away (``refused``: id -> who) is marked refused, and one whose create is no longer held apart
    (an accept counted it) is marked merged. ``envelopes`` are the envelopes of deltas just
    held (a new claim's signed bytes come from there, or from the log). Returns the rows opened."""
    rows = conn.execute(select(claims.c.claim_id, claims.c.body, claims.c.status).where(
        and_(claims.c.kind == kind, claims.c.record_id == record_id))).all()
    known = {hashlib.sha256(bytes(body)).hexdigest(): (cid, status) for cid, body, status in rows}
    refused = refused or {}
    for did, (cid, status) in known.items():  # turned away by an involved province's signed refuse
        if status == OPEN and did in refused:
            decide(conn, [cid], REFUSED, refused[did], now_ms)
    merged = [cid for did, (cid, status) in known.items()
              if status == OPEN and did not in waiting and did not in refused]
    if merged:
        decide(conn, merged, MERGED, "merged on receipt", now_ms)
    new = sorted(did for did in waiting if did not in known)
    if not new:
        return 0
    bodies = {did: envelopes[did].body for did in new if did in envelopes}
    missing = [did for did in new if did not in bodies]
    if missing:
        bodies.update((did, env.body) for did, env in changelog.envelopes(conn, kind, [record_id], missing).items())
    conn.execute(insert(claims), [{"kind": kind, "record_id": record_id, "origin": waiting[did].origin,
                                   "seq": waiting[did].seq, "body": bodies[did], "received_ms": now_ms,
                                   "status": OPEN} for did in new if did in bodies])
    return len(new)


def open_ids(conn: Connection, claim_id: int) -> tuple[str, ...]:
    """The delta id of an open claim (what an ``accept`` names), by its claim number."""
    body = conn.execute(select(claims.c.body).where(claims.c.claim_id == claim_id)).scalar()
    return (hashlib.sha256(bytes(body)).hexdigest(),) if body is not None else ()


def decide(conn: Connection, claim_ids: Sequence[int], status: str, by: str, now_ms: int) -> None:
    if claim_ids:
        conn.execute(update(claims).where(claims.c.claim_id.in_(list(claim_ids)))
                     .values(status=status, decided_ms=now_ms, decided_by=by))


def _op(body: bytes) -> str:
    try:
        return delta_parse(body, b"{}", complete=False).op
    except Malformed:
        return parse(body).op  # a v1 claim, kept from before the v2 upgrade


def get(conn: Connection, claim_id: int) -> Claim | None:
    rows = _select(conn, claims.c.claim_id == claim_id)
    return rows[0] if rows else None


def listing(conn: Connection, *, status: str | None = None) -> list[Claim]:
    return _select(conn, claims.c.status == status if status is not None else None)


def _select(conn: Connection, where: ColumnElement[bool] | None) -> list[Claim]:
    q = select(claims.c.claim_id, claims.c.kind, claims.c.record_id, claims.c.origin, claims.c.seq, claims.c.body,
               claims.c.received_ms, claims.c.status, claims.c.decided_ms, claims.c.decided_by)
    if where is not None:
        q = q.where(where)
    out = []
    for cid, kind, rid, origin, seq, body, received, status, decided_ms, decided_by in conn.execute(
            q.order_by(claims.c.claim_id)):
        out.append(Claim(cid, kind, rid, origin, seq, _op(bytes(body)), received, status, decided_ms, decided_by))
    return out
