"""The log of changes a store accepted: appending, reading, and what subscribers wait for.

Every accepted change gets the next log sequence number (lsn). A node's own
changes are its outbox (read by ``seq``, shared ones only); a hub indexes every
entry by the provinces it routes to (``log_dest``), and each subscriber reads
the entries its ``Filter`` admits after its cursor. Functions here take an open
connection; the Store decides transactions and locking.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple, Sequence

from sqlalchemy import and_, func, select
from sqlalchemy import ColumnElement, Connection

from core.change import Change, Envelope, Head
from core.delta import Delta
from core import relay
from core.identity import Identity
from core.merkle import Seal
from core.routing import Filter, leaves_node
from store.db import insert_rows
from store.schema import log, log_dest


class LogEntry(NamedTuple):  # a tuple: read by the hundred per batch, built in one call
    lsn: int
    origin: str
    seq: int
    kind: str
    record_id: str
    op: str
    operator: str | None
    at_ms: int
    body: bytes
    seal: Seal
    routes: frozenset[str]
    via: str
    received_ms: int
    openings: bytes = b"{}"  # v2: the delta's field values (core.delta)
    relay: bytes | None = None  # v2: the history it carries to a newly involved province (core.relay, packed)

    @property
    def envelope(self) -> Envelope:
        return Envelope(self.body, self.seal, self.openings, relay.unpack(self.relay) if self.relay else ())


def routes_text(provinces: frozenset[str]) -> str:
    return "," + ",".join(sorted(provinces)) + "," if provinces else ","


def _routes_set(text: str) -> frozenset[str]:
    return frozenset(text[1:-1].split(",")) if len(text) > 1 else frozenset()  # ",11,44," / ","


_LOG_COLUMNS = ("lsn", "origin", "seq", "kind", "record_id", "op", "operator", "at_ms", "digest", "body", "key_id",
                "signature", "seal_index", "seal_size", "proof", "routes", "shared", "via", "received_ms", "openings",
                "relay")
# Columns read back into LogEntry, in its field order (digest and shared stay in the database).
_ENTRY_COLUMNS = (log.c.lsn, log.c.origin, log.c.seq, log.c.kind, log.c.record_id, log.c.op, log.c.operator,
                  log.c.at_ms, log.c.body, log.c.key_id, log.c.signature, log.c.seal_index, log.c.seal_size,
                  log.c.proof, log.c.routes, log.c.via, log.c.received_ms, log.c.openings, log.c.relay)


def _entry(r: Sequence[Any]) -> LogEntry:
    (lsn, origin, seq, kind, record_id, op, operator, at_ms, body, key_id, signature, index, size, proof,
     routes, via, received_ms, openings, packed) = r
    proof = bytes(proof)
    seal = Seal(key_id, bytes(signature), index, size, tuple([proof[i:i + 32] for i in range(0, len(proof), 32)]))
    return LogEntry(lsn, origin, seq, kind, record_id, op, operator, at_ms, bytes(body), seal, _routes_set(routes),
                    via, received_ms, bytes(openings) if openings is not None else b"{}",
                    bytes(packed) if packed is not None else None)


def append(conn: Connection, items: Sequence[tuple[Change | Head | Delta, Envelope]], *, via: str, now_ms: int,
           index_routes: bool, digests: Sequence[bytes] | None = None) -> None:
    """Append changes with the next lsns. The caller holds the store's write lock, so the lsns are its to hand out."""
    if not items:
        return
    lsn = int(conn.execute(select(func.max(log.c.lsn))).scalar() or 0)
    rows, dests = [], []
    sha256 = hashlib.sha256
    for i, (change, env) in enumerate(items):
        lsn += 1
        routes = change.routes
        seal = env.seal
        rows.append((
            lsn, change.origin, change.seq, change.kind, change.record_id, change.op, change.operator,
            change.at.wall_ms, digests[i] if digests is not None else sha256(env.body).digest(), env.body,
            seal.key_id, seal.signature, seal.index, seal.size, b"".join(seal.proof), routes_text(routes),
            leaves_node(routes, Identity.parse(change.origin).name), via, now_ms,
            env.openings if env.openings != b"{}" else None,
            relay.pack(env.relayed) if env.relayed else None,
        ))
        if index_routes:
            dests += [(p, lsn) for p in sorted(routes)]
    insert_rows(conn, log, _LOG_COLUMNS, rows)
    if dests:
        insert_rows(conn, log_dest, ("province", "lsn"), dests)


def digests(conn: Connection, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], set[bytes]]:
    """Digests of the changes among ``keys`` (origin, seq) already in the log: usually one each,
    more where the origin equivocated (core.intakeplan)."""
    out: dict[tuple[str, int], set[bytes]] = {}
    by_origin: dict[str, list[int]] = {}
    for origin, seq in keys:
        by_origin.setdefault(origin, []).append(seq)
    for origin, seqs in by_origin.items():
        for i in range(0, len(seqs), 500):
            q = select(log.c.seq, log.c.digest).where(and_(log.c.origin == origin, log.c.seq.in_(seqs[i:i + 500])))
            for seq, digest in conn.execute(q):
                out.setdefault((origin, seq), set()).add(bytes(digest))
    return out


def envelopes(conn: Connection, kind: str, record_ids: Sequence[str], ids: Sequence[str]) -> dict[str, Envelope]:
    """{delta id (hex digest): its envelope as logged} for those of ``ids`` logged under the
    records ``record_ids`` (found by the record index, then picked by digest)."""
    out: dict[str, Envelope] = {}
    for i in range(0, len(ids), 500):
        chunk = [bytes.fromhex(d) for d in ids[i:i + 500]]
        q = select(log.c.digest, *_ENTRY_COLUMNS).where(and_(
            log.c.kind == kind, log.c.record_id.in_(list(record_ids)), log.c.digest.in_(chunk)))
        for row in conn.execute(q):
            out[bytes(row[0]).hex()] = _entry(row[1:]).envelope
    return out


def last_seq(conn: Connection, origin: str) -> int:
    return int(conn.execute(select(func.max(log.c.seq)).where(log.c.origin == origin)).scalar() or 0)


def last_lsn(conn: Connection) -> int:
    return int(conn.execute(select(func.max(log.c.lsn))).scalar() or 0)


def last_write_ms(conn: Connection, origin: str) -> int | None:
    return conn.execute(select(func.max(log.c.at_ms)).where(log.c.origin == origin)).scalar()


def outbox(conn: Connection, origin: str, after_seq: int, limit: int, upto: int | None = None) -> list[LogEntry]:
    """``origin``'s own changes that must leave its node, after the acknowledged sequence."""
    cond = [log.c.origin == origin, log.c.shared.is_(True), log.c.seq > after_seq]
    if upto is not None:
        cond.append(log.c.seq <= upto)
    q = select(*_ENTRY_COLUMNS).where(and_(*cond)).order_by(log.c.seq).limit(limit)
    return [_entry(r) for r in conn.execute(q)]


def outbox_page(conn: Connection, origin: str, after_seq: int, limit: int) -> tuple[list[LogEntry], int]:
    """``outbox``, and the seq scanned up to: past the entries that never leave the node.

    The last seq is read first: seqs are handed out under the write lock and committed in
    order, so every change up to it is already visible to the outbox query that follows.
    """
    upto = last_seq(conn, origin)
    entries = outbox(conn, origin, after_seq, limit, upto)
    if len(entries) == limit:
        return entries, entries[-1].seq
    return entries, max(upto, after_seq)


def outbox_stats(conn: Connection, origin: str, after_seq: int) -> tuple[int, int | None]:
    """(changes waiting, received_ms of the oldest) beyond ``after_seq``."""
    q = select(func.count(), func.min(log.c.received_ms)).where(
        and_(log.c.origin == origin, log.c.shared.is_(True), log.c.seq > after_seq))
    n, oldest = conn.execute(q).one()
    return int(n or 0), oldest


def _admitted(after_lsn: int, upto: int, flt: Filter | None, not_via: str | None) -> ColumnElement[bool]:
    cond = [log.c.lsn > after_lsn, log.c.lsn <= upto]
    if flt is not None:
        dest = select(log_dest.c.lsn).where(and_(log_dest.c.province.in_(sorted(flt.provinces)),
                                                 log_dest.c.lsn > after_lsn, log_dest.c.lsn <= upto))
        cond.append(log.c.lsn.in_(dest))
        if flt.not_origin:
            cond.append(log.c.origin != flt.not_origin)
        if flt.not_via:
            cond.append(log.c.via != flt.not_via)
    if not_via:
        cond.append(log.c.via != not_via)
    return and_(*cond)


# A read looks at most this many lsns ahead: a filter's index lookup (log_dest) is materialised
# by the database over the range it is given, so an unbounded range would make every read of a
# million-change backlog cost the whole backlog. A stretch with nothing admitted is skipped.
SCAN_WINDOW = 20_000


def read(conn: Connection, after_lsn: int, *, flt: Filter | None, not_via: str | None,
         limit: int) -> tuple[list[LogEntry], int]:
    """Entries after ``after_lsn`` that ``flt`` admits, and the lsn scanned up to.

    The returned position may be past the last entry: the filtered-out
    stretch counts as delivered, so the subscriber never re-scans it. An
    empty page with a position further on means "nothing for you there,
    read on".
    """
    upto = min(last_lsn(conn), after_lsn + SCAN_WINDOW)
    if upto <= after_lsn:
        return [], after_lsn
    q = select(*_ENTRY_COLUMNS).where(_admitted(after_lsn, upto, flt, not_via)).order_by(log.c.lsn).limit(limit)
    rows = [_entry(r) for r in conn.execute(q)]
    if len(rows) == limit:
        return rows, rows[-1].lsn
    return rows, upto


def pending(conn: Connection, after_lsn: int, *, flt: Filter | None, not_via: str | None) -> tuple[int, int | None]:
    """(entries waiting, received_ms of the oldest) for a subscriber at ``after_lsn``."""
    q = select(func.count(), func.min(log.c.received_ms)).where(_admitted(after_lsn, last_lsn(conn), flt, not_via))
    n, oldest = conn.execute(q).one()
    return int(n or 0), oldest


def history(conn: Connection, kind: str, record_id: str) -> list[LogEntry]:
    q = select(*_ENTRY_COLUMNS).where(and_(log.c.kind == kind, log.c.record_id == record_id)).order_by(log.c.lsn)
    return [_entry(r) for r in conn.execute(q)]
