"""Claims held apart from the records (core.claims): keeping, listing and deciding them.

Functions take an open connection; the Store decides transactions. A claim row keeps
the claimer's signed change exactly as received, so accepting it merges those bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import and_, insert, select, update
from sqlalchemy import ColumnElement, Connection

from core.change import Change, parse
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


def decide(conn: Connection, claim_ids: Sequence[int], status: str, by: str, now_ms: int) -> None:
    if claim_ids:
        conn.execute(update(claims).where(claims.c.claim_id.in_(list(claim_ids)))
                     .values(status=status, decided_ms=now_ms, decided_by=by))


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
        out.append(Claim(cid, kind, rid, origin, seq, parse(bytes(body)).op, received, status, decided_ms, decided_by))
    return out
