"""A record's v2 history in the database: held deltas in ``log``, waiting ones in ``parked``.

How this works (docs/design/v2-wire.md, sections 3.3 and 8.2). The pure core decides:
``core.graph.RecordGraph`` holds, parks or refuses a delta on the history it is given. This
module only loads that history and writes the decisions back, inside the caller's transaction:

* held deltas are the record's ``log`` rows, read in lsn order, which is an order where every
  delta follows its dependencies (a delta is logged only once they are held);
* parked deltas are ``parked`` rows, with the signer and what each waits for;
* a decision already taken is put back as it was (``RecordGraph.restore``), never re-decided:
  the clock has moved on since, and the decision was durable.

Rows were verified (signature, envelope) before they were written, so loading only parses.
A record's v1 changes (from before the v2 upgrade) are not deltas and are not loaded: its v2
history starts at its baseline (core.baseline), which carries the state they made. A record
with v1 changes only cannot be written until its baseline is held (``load`` says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, select

from core import canonical
from core.delta import Delta, parse
from core.errors import LocalError, Malformed
from core.graph import BASELINE, TIME, RecordGraph, Rules
from core.merkle import Seal
from core.change import Envelope
from store.db import insert_rows
from store.schema import aliases, log, parked, parked_waits

_V1 = 1  # the "v" of a v1 change: a record's history from before the v2 upgrade
_PARKED_COLUMNS = ("digest", "kind", "record_id", "origin", "seq", "signer", "body", "key_id", "signature",
                   "seal_index", "seal_size", "proof", "openings", "waiting_for", "via", "received_ms")


@dataclass(frozen=True, slots=True)
class ParkedEntry:
    """One delta waiting, as ``status`` and ``quarantine list`` show it (no field values)."""

    digest: str
    kind: str
    record_id: str
    origin: str
    seq: int
    waiting_for: tuple[str, ...]  # delta ids, or "time"
    via: str
    received_ms: int


def _waiting_text(waiting: Iterable[str]) -> str:
    return "," + ",".join(sorted(waiting)) + ","


def _waiting_set(text: str) -> frozenset[str]:
    return frozenset(t for t in text.split(",") if t)


def _seal(key_id: str, signature: bytes, index: int, size: int, proof: bytes) -> Seal:
    proof = bytes(proof)
    return Seal(key_id, bytes(signature), index, size, tuple(proof[i:i + 32] for i in range(0, len(proof), 32)))


def load(conn, kind: str, record_id: str, rules: Rules) -> RecordGraph:  # type: ignore[no-untyped-def]
    """The record's graph as this replica decided it: held deltas from ``log``, waiting ones from
    ``parked``, with those of every record an alias in it takes in (``person link``).
    Raises LocalError for a record with v1 history and no delta yet (it needs its baseline)."""
    graph = load_many(conn, kind, [record_id], rules)[record_id]
    if graph.legacy and not graph.held:
        raise LocalError(f"{kind} {record_id} has v1 history only; it needs its v2 baseline first "
                         "(yipanqi upgrade v2 at its household province)")
    return graph


def load_many(conn, kind: str, record_ids: Sequence[str], rules: Rules) -> dict[str, RecordGraph]:  # type: ignore[no-untyped-def]
    """``load`` for many records of one kind, in two queries per 500 records (a batch's records).
    A record with v1 changes loads without them, marked ``legacy`` (it takes its baseline first)."""
    graphs = {rid: RecordGraph(kind, rid, rules) for rid in record_ids}
    held: dict[str, list[tuple[str, Delta]]] = {rid: [] for rid in record_ids}
    waiting: dict[str, list] = {rid: [] for rid in record_ids}
    ids = sorted(graphs)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        q = (select(log.c.record_id, log.c.digest, log.c.body, log.c.openings)
             .where(and_(log.c.kind == kind, log.c.record_id.in_(chunk))).order_by(log.c.lsn))
        for rid, digest, body, openings in conn.execute(q):
            delta = _parse_held(kind, rid, body, openings)
            if delta is None:
                graphs[rid].legacy = True
                continue
            held[rid].append((bytes(digest).hex(), delta))
        q = select(parked.c.record_id, parked.c.digest, parked.c.body, parked.c.openings, parked.c.signer,
                   parked.c.waiting_for).where(and_(parked.c.kind == kind, parked.c.record_id.in_(chunk)))
        for rid, d, b, o, signer, w in conn.execute(q):
            waiting[rid].append((d, parse(bytes(b), bytes(o), complete=False), signer, _waiting_set(w)))
    for rid, graph in graphs.items():
        graph.restore(held[rid], waiting[rid])
        taken = {m for _, d in held[rid] for m in d.merges} | {m for _, d, _, _ in waiting[rid] for m in d.merges}
        if taken:  # rare: a record that took others in (person link) loads theirs too
            extend(conn, graph, taken)
    return graphs


def _parse_held(kind: str, record_id: str, body: bytes, openings: bytes | None) -> Delta | None:
    """A held row's delta, or None for a v1 change (history from before the v2 upgrade)."""
    try:  # what was verified on receipt, as received (a relay's may leave superseded values out)
        return parse(bytes(body), bytes(openings or b"{}"), complete=False)
    except Malformed as err:
        try:
            obj = canonical.loads(bytes(body))
        except Malformed:
            obj = None
        if isinstance(obj, dict) and obj.get("v") == _V1:
            return None
        raise LocalError(f"{kind} {record_id} has history the v2 core cannot read ({err})") from None


def extend(conn, graph: RecordGraph, record_ids: Iterable[str]) -> None:  # type: ignore[no-untyped-def]
    """Put the held and parked deltas of ``record_ids`` (and of what their aliases take in) into
    ``graph``, as decided before. Held ones go in log order across all of them, which keeps
    every delta after its dependencies."""
    loaded: set[str] = set()
    todo = set(record_ids)
    while todo - loaded:
        batch = sorted(todo - loaded)
        loaded |= set(batch)
        held: list[tuple[str, Delta]] = []
        q = (select(log.c.digest, log.c.body, log.c.openings)
             .where(and_(log.c.kind == graph.kind, log.c.record_id.in_(batch))).order_by(log.c.lsn))
        for digest, body, openings in conn.execute(q):
            delta = _parse_held(graph.kind, graph.record_id, body, openings)
            if delta is not None:
                held.append((bytes(digest).hex(), delta))
        waiting = [(d, parse(bytes(b), bytes(o), complete=False), signer, _waiting_set(w)) for d, b, o, signer, w in conn.execute(
            select(parked.c.digest, parked.c.body, parked.c.openings, parked.c.signer, parked.c.waiting_for)
            .where(and_(parked.c.kind == graph.kind, parked.c.record_id.in_(batch))))]
        graph.restore(held, waiting)  # the graph orders by ancestry, not by how it was loaded
        todo |= {m for _, d in held for m in d.merges} | {m for _, d, _, _ in waiting for m in d.merges}


def park(conn, items: Sequence[tuple[str, Delta, Envelope, str, frozenset[str], str]], now_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Keep (id, delta, envelope, signer, waiting for, via) rows until what they wait for arrives.
    A delta parked again (it still waits, for something else now) replaces its row."""
    if not items:
        return
    ids = [i[0] for i in items]
    conn.execute(delete(parked).where(parked.c.digest.in_(ids)))
    conn.execute(delete(parked_waits).where(parked_waits.c.digest.in_(ids)))
    waits = [(dep, did) for did, _, _, _, waiting, _ in items for dep in sorted(waiting) if dep not in (TIME, BASELINE)]
    if waits:
        insert_rows(conn, parked_waits, ("dep", "digest"), waits)
    insert_rows(conn, parked, _PARKED_COLUMNS, [
        (did, d.kind, d.record_id, d.origin, d.seq, signer, env.body, env.seal.key_id, env.seal.signature,
         env.seal.index, env.seal.size, b"".join(env.seal.proof), env.openings, _waiting_text(waiting), via, now_ms)
        for did, d, env, signer, waiting, via in items])


def unpark(conn, digests: Sequence[str]) -> dict[str, tuple[Envelope, str]]:  # type: ignore[no-untyped-def]
    """Remove these parked rows; returns each one's envelope and the peer it came via."""
    out: dict[str, tuple[Envelope, str]] = {}
    if not digests:
        return out
    for i in range(0, len(digests), 500):
        chunk = list(digests[i:i + 500])
        q = select(parked.c.digest, parked.c.body, parked.c.key_id, parked.c.signature, parked.c.seal_index,
                   parked.c.seal_size, parked.c.proof, parked.c.openings, parked.c.via).where(parked.c.digest.in_(chunk))
        for did, body, key_id, signature, index, size, proof, openings, via in conn.execute(q):
            out[did] = (Envelope(bytes(body), _seal(key_id, signature, index, size, proof), bytes(openings)), via)
        conn.execute(delete(parked).where(parked.c.digest.in_(chunk)))
        conn.execute(delete(parked_waits).where(parked_waits.c.digest.in_(chunk)))
    return out


def waiting_on(conn, digests: Iterable[str]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(kind, record_id) of the records with a delta parked waiting for any of ``digests`` (an alias
    waits for deltas of the records it takes in, which are held under their own record): an index
    probe per 500 ids in ``parked_waits``, however many deltas are parked."""
    found: set[tuple[str, str]] = set()
    ids = sorted(set(digests))
    for i in range(0, len(ids), 500):
        q = (select(parked.c.kind, parked.c.record_id)
             .join(parked_waits, parked_waits.c.digest == parked.c.digest)
             .where(parked_waits.c.dep.in_(ids[i:i + 500])).distinct())
        found.update((k, r) for k, r in conn.execute(q))
    return sorted(found)


def waiting_on_time(conn) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(kind, record_id) of the records with a delta parked until the clock catches up with it."""
    q = select(parked.c.kind, parked.c.record_id).where(parked.c.waiting_for.like(f"%,{TIME},%")).distinct()
    return [(k, r) for k, r in conn.execute(q)]


def listing(conn, limit: int) -> list[ParkedEntry]:  # type: ignore[no-untyped-def]
    q = (select(parked.c.digest, parked.c.kind, parked.c.record_id, parked.c.origin, parked.c.seq,
                parked.c.waiting_for, parked.c.via, parked.c.received_ms)
         .order_by(parked.c.received_ms, parked.c.digest).limit(limit))
    return [ParkedEntry(d, k, r, o, s, tuple(sorted(_waiting_set(w))), v, ms) for d, k, r, o, s, w, v, ms in conn.execute(q)]


def count(conn) -> tuple[int, int | None]:  # type: ignore[no-untyped-def]
    """(deltas parked, received_ms of the oldest)."""
    n, oldest = conn.execute(select(func.count(), func.min(parked.c.received_ms))).one()
    return int(n or 0), oldest


MAX_ALIAS_DEPTH = 8  # links of links: a chain longer than this is refused by the store's caller


def resolve_many(conn, kind: str, record_ids: Iterable[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """``resolve`` for many records: one query per 500 when none was linked (the usual case)."""
    ids = sorted(set(record_ids))
    out = {rid: rid for rid in ids}
    linked: list[str] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        linked += [r for (r,) in conn.execute(select(aliases.c.record_id).where(
            and_(aliases.c.kind == kind, aliases.c.record_id.in_(chunk))))]
    for rid in linked:
        out[rid] = resolve(conn, kind, rid)
    return out


def resolve(conn, kind: str, record_id: str) -> str:  # type: ignore[no-untyped-def]
    """The record ``record_id`` is part of now: itself, or what aliases took it into."""
    seen = [record_id]
    for _ in range(MAX_ALIAS_DEPTH):
        into = conn.execute(select(aliases.c.into).where(
            and_(aliases.c.kind == kind, aliases.c.record_id == seen[-1]))).scalar()
        if into is None or into in seen:
            break
        seen.append(into)
    return seen[-1]


def note_aliases(conn, logged: Iterable[Delta], now_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Remember the records the aliases among ``logged`` took in (first alias wins: a record is
    taken into one record; a second alias naming it is still held, and merges nothing new)."""
    for d in logged:
        for m in d.merges:
            known = conn.execute(select(aliases.c.into).where(
                and_(aliases.c.kind == d.kind, aliases.c.record_id == m))).scalar()
            if known is None:
                conn.execute(insert(aliases).values(kind=d.kind, record_id=m, into=d.record_id, since_ms=now_ms))
