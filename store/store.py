"""The durable store of a node or hub, behind one interface for every backend.

Contract (tested by tests/contract against SQLite and PostgreSQL):
  * ``write_local`` is one transaction: the new record state and the signed
    change (next sequence number) land together or not at all.
  * ``ingest`` is one transaction per batch: accepted changes are appended to
    the log (and merged into records, and indexed by route on hubs), refused
    ones go to quarantine with their reason, and the pull cursor moves, all
    together. A change already in the log (same origin and seq, same bytes)
    changes nothing; same origin and seq with other bytes is equivocation and
    is quarantined.
  * Log sequence numbers (lsn) become visible in increasing order: one process
    owns a store and serialises its writes, so a reader that has seen lsn N
    has seen every lsn below N. Subscribers rely on this to never skip.
Errors are returned as exceptions from core.errors; nothing here logs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, NamedTuple, Sequence

from sqlalchemy import Engine, and_, bindparam, func, insert, select, update

from core import hlc
from core.apply import apply, local_write
from core.change import Change, Envelope, Head
from core.errors import Equivocation, LocalError, NotFound, SyncError
from core.identity import Identity
from core.merkle import Seal
from core.record import RecordState
from core.routing import Filter, leaves_node
from store.db import migrate, open_engine
from store.schema import counters, cursors, keys, log, log_dest, meta, quarantine, records

MAX_CLOCK_LEAD_MS = 24 * 3600 * 1000
ACK_FLUSH_S = 0.25
Sealer = Callable[[Sequence[bytes]], list[Seal]]
Edit = Callable[[RecordState | None], tuple[str, Mapping[str, object]]]


def _routes_text(provinces: frozenset[str]) -> str:
    return "," + ",".join(sorted(provinces)) + "," if provinces else ","


class _Q:  # quarantine's text column lengths
    peer = quarantine.c.peer.type.length
    origin = quarantine.c.origin.type.length
    kind = quarantine.c.kind.type.length
    record_id = quarantine.c.record_id.type.length
    key_id = quarantine.c.key_id.type.length


def _storable(text: str | None, max_len: int) -> str | None:
    """Peer-supplied text made storable as-is on SQLite and PostgreSQL: PostgreSQL text
    cannot hold NUL, neither driver can encode lone surrogates, and PostgreSQL refuses
    strings longer than the column (SQLite would keep them)."""
    if text is None:
        return None
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text[:max_len]


def _text(value: object, size: int) -> str | None:
    """A projection column's value: text that fits, else nothing (the state stays authoritative).
    Values come unvalidated from peers (only routing fields are checked on receipt): a NUL,
    which PostgreSQL text cannot hold, would fail the whole batch."""
    return value if isinstance(value, str) and len(value) <= size and "\x00" not in value else None


def _routes_set(text: str) -> frozenset[str]:
    return frozenset(text[1:-1].split(",")) if len(text) > 1 else frozenset()  # ",11,44," / ","


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

    @property
    def envelope(self) -> Envelope:
        return Envelope(self.body, self.seal)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A change that passed intake: signature verified, author authorised."""

    change: Change | Head  # Head on regional hubs, which merge nothing
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Refused:
    envelope: Envelope
    reason: str
    origin: str | None = None
    seq: int | None = None
    kind: str | None = None
    record_id: str | None = None


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    opened: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, id, field)


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    received_ms: int
    peer: str
    origin: str | None
    seq: int | None
    kind: str | None
    record_id: str | None
    reason: str


_LOG_COLUMNS = ("lsn", "origin", "seq", "kind", "record_id", "op", "operator", "at_ms", "digest", "body", "key_id",
                "signature", "seal_index", "seal_size", "proof", "routes", "shared", "via", "received_ms")


def _insert_rows(conn, table, columns: Sequence[str], rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    """One executemany of plain tuples, straight to the driver: the hot path appends hundreds of
    log rows per batch, and per-row parameter processing would cost more than the insert itself.
    Values are already the driver's types (str, int, bytes, bool) on SQLite and PostgreSQL."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    conn.exec_driver_sql(sql, rows)


# Columns read back into LogEntry, in its field order (digest and shared stay in the database).
_ENTRY_COLUMNS = (log.c.lsn, log.c.origin, log.c.seq, log.c.kind, log.c.record_id, log.c.op, log.c.operator,
                  log.c.at_ms, log.c.body, log.c.key_id, log.c.signature, log.c.seal_index, log.c.seal_size,
                  log.c.proof, log.c.routes, log.c.via, log.c.received_ms)


_RECORD_VALUES = ("state", "deleted", "conflicted", "provinces", "updated_ms", "household", "residence", "moved_on")


def _row_entry(r) -> LogEntry:  # type: ignore[no-untyped-def]
    (lsn, origin, seq, kind, record_id, op, operator, at_ms, body, key_id, signature, index, size, proof,
     routes, via, received_ms) = r
    proof = bytes(proof)
    seal = Seal(key_id, bytes(signature), index, size, tuple([proof[i:i + 32] for i in range(0, len(proof), 32)]))
    return LogEntry(lsn, origin, seq, kind, record_id, op, operator, at_ms, bytes(body), seal, _routes_set(routes),
                    via, received_ms)


class Store:
    """One replica's database. ``owner`` is the identity of the process that owns it."""

    def __init__(self, engine: Engine, *, owner: str, index_routes: bool = False, hold_records: bool = True):
        self.engine = engine
        self.owner = owner
        ident = Identity.parse(owner)
        self.province = ident.name if ident.role == "province" else None
        self.index_routes = index_routes
        self.hold_records = hold_records
        self._lock = threading.RLock()
        self.appended = threading.Condition()
        self.generation = 0  # bumped on every append; waiters compare to skip lost wake-ups
        # (origin, written ms, applied ms) of the latest arrivals, for delivery-delay figures.
        self.arrivals: deque[tuple[str, int, int]] = deque(maxlen=10_000)
        self._acks: dict[str, tuple[int, int]] = {}  # cursor name -> (value, ms): noted, not yet written
        self._acks_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()
        with engine.begin() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == "owner")).scalar()
            if found is None:
                conn.execute(insert(meta).values(key="owner", value=owner))
            elif found != owner:
                raise LocalError(f"database belongs to {found}, not {owner}")
            last_at = conn.execute(select(func.max(log.c.at_ms)).where(log.c.origin == owner)).scalar()
            self._init_counters(conn)
        # Past every timestamp we issued before a restart (only the wall part is stored).
        self._hlc = hlc.Timestamp(last_at + 1 if last_at else 0, 0, owner)

    # Live and conflicted record counts are counters updated in the same transaction as the
    # records, so status stays O(1) however many records a store holds.
    _LIVE, _CONFLICTED = "records:live", "records:conflicted"

    def _init_counters(self, conn) -> None:  # type: ignore[no-untyped-def]
        have = set(conn.execute(select(counters.c.name).where(counters.c.name.in_([self._LIVE, self._CONFLICTED]))).scalars())
        if self._LIVE not in have:  # first open of a store (or one from before counters): count once
            live = conn.execute(select(func.count()).select_from(records).where(records.c.deleted.is_(False))).scalar()
            self._set_counter(conn, self._LIVE, int(live or 0), 0)
        if self._CONFLICTED not in have:
            n = conn.execute(select(func.count()).select_from(records).where(
                and_(records.c.deleted.is_(False), records.c.conflicted.is_(True)))).scalar()
            self._set_counter(conn, self._CONFLICTED, int(n or 0), 0)

    def _bump(self, conn, name: str, delta: int) -> None:  # type: ignore[no-untyped-def]
        if delta:
            conn.execute(update(counters).where(counters.c.name == name).values(value=counters.c.value + delta))

    def _set_counter(self, conn, name: str, value: int, at_ms: int) -> None:  # type: ignore[no-untyped-def]
        done = conn.execute(update(counters).where(counters.c.name == name).values(value=value, at_ms=at_ms))
        if done.rowcount == 0:
            conn.execute(insert(counters).values(name=name, value=value, at_ms=at_ms))

    def _counters(self, prefix: str) -> dict[str, tuple[int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(counters).where(counters.c.name.startswith(prefix))).all()
        return {r.name: (int(r.value), int(r.at_ms)) for r in rows}

    @classmethod
    def open(cls, url: str, *, owner: str, index_routes: bool = False, hold_records: bool = True) -> "Store":
        engine = open_engine(url)
        migrate(engine)
        return cls(engine, owner=owner, index_routes=index_routes, hold_records=hold_records)

    def close(self) -> None:
        self._closed.set()
        try:
            self.flush_acks()
        finally:
            self.engine.dispose()

    # -- records -------------------------------------------------------------
    def _load(self, conn, kind: str, record_id: str) -> RecordState | None:  # type: ignore[no-untyped-def]
        raw = conn.execute(
            select(records.c.state).where(and_(records.c.kind == kind, records.c.record_id == record_id))
        ).scalar()
        if raw is None:
            return None
        from core import canonical

        return RecordState.from_json(kind, record_id, canonical.loads(bytes(raw)))

    def _load_many(self, conn, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RecordState | None]:  # type: ignore[no-untyped-def]
        """Current states of many records in a few queries (None where absent)."""
        from core import canonical

        out: dict[tuple[str, str], RecordState | None] = {k: None for k in keys}
        by_kind: dict[str, list[str]] = {}
        for kind, record_id in out:
            by_kind.setdefault(kind, []).append(record_id)
        for kind, ids in by_kind.items():
            for i in range(0, len(ids), 500):
                q = select(records.c.record_id, records.c.state).where(
                    and_(records.c.kind == kind, records.c.record_id.in_(ids[i:i + 500])))
                for rid, raw in conn.execute(q):
                    out[(kind, rid)] = RecordState.from_json(kind, rid, canonical.loads(bytes(raw)))
        return out

    def _save_many(self, conn, states: Sequence[tuple[RecordState, RecordState | None]], now_ms: int) -> None:  # type: ignore[no-untyped-def]
        """Write record states, each with the state it replaces (None: a new record)."""
        from core.change import state_provinces

        inserts, updates = [], []
        live = conflicted = 0
        for state, prior in states:
            now_live = not state.deleted
            now_conflicted = bool(state.conflicts())
            was_live = prior is not None and not prior.deleted
            was_conflicted = was_live and bool(prior.conflicts())  # type: ignore[union-attr]
            live += now_live - was_live
            conflicted += (now_live and now_conflicted) - was_conflicted
            shown = state.values()
            values = (state.to_bytes(), state.deleted, now_conflicted, _routes_text(state_provinces(state)), now_ms,
                      _text(shown.get("household_province"), 2), _text(shown.get("residence_province"), 2),
                      _text(shown.get("moved_in_on"), 10))
            if prior is None:
                inserts.append((state.kind, state.record_id, *values))
            else:
                updates.append((*values, state.kind, state.record_id))
        if inserts:
            _insert_rows(conn, records, ("kind", "record_id", *_RECORD_VALUES), inserts)
        if updates:
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            conn.exec_driver_sql(f"UPDATE records SET {', '.join(f'{c} = {mark}' for c in _RECORD_VALUES)} "
                                 f"WHERE kind = {mark} AND record_id = {mark}", updates)
        self._bump(conn, self._LIVE, live)
        self._bump(conn, self._CONFLICTED, conflicted)

    def get(self, kind: str, record_id: str) -> RecordState | None:
        with self.engine.connect() as conn:
            return self._load(conn, kind, record_id)

    def require(self, kind: str, record_id: str) -> RecordState:
        state = self.get(kind, record_id)
        if state is None:
            raise NotFound(f"no {kind} record {record_id} on {self.owner}")
        return state

    def iter_records(self, kind: str, *, include_deleted: bool = False, conflicted_only: bool = False,
                     page: int = 500) -> Iterator[RecordState]:
        """All records of a kind in id order, read page by page (memory stays flat)."""
        from core import canonical

        after = ""
        while True:
            q = select(records.c.record_id, records.c.state).where(
                and_(records.c.kind == kind, records.c.record_id > after))
            if not include_deleted:
                q = q.where(records.c.deleted.is_(False))
            if conflicted_only:
                q = q.where(records.c.conflicted.is_(True))
            with self.engine.connect() as conn:
                rows = conn.execute(q.order_by(records.c.record_id).limit(page)).all()
            for r in rows:
                yield RecordState.from_json(kind, r.record_id, canonical.loads(bytes(r.state)))
            if len(rows) < page:
                return
            after = rows[-1].record_id

    def flow_counts(self, kind: str = "person") -> list[tuple[str | None, str | None, str | None, int]]:
        """(household, residence, move month, live records) groups, from the projection columns."""
        month = func.substr(records.c.moved_on, 1, 7)
        q = (select(records.c.household, records.c.residence, month, func.count())
             .where(and_(records.c.kind == kind, records.c.deleted.is_(False)))
             .group_by(records.c.household, records.c.residence, month))
        with self.engine.connect() as conn:
            return [(h, r, m, int(n)) for h, r, m, n in conn.execute(q)]

    def count_records(self, *, conflicted_only: bool = False) -> int:
        """Live records (or live records with open conflicts), from the counters."""
        name = self._CONFLICTED if conflicted_only else self._LIVE
        return self._counters(name).get(name, (0, 0))[0]

    # -- local writes ----------------------------------------------------------
    def write_local(self, kind: str, record_id: str, edit: Edit, *, operator: str | None,
                    now_ms: int, seal: Sealer) -> Change:
        """Apply an operator's edit as one signed change, in one transaction."""
        (result,) = self.write_local_batch([(kind, record_id, edit)], operator=operator, now_ms=now_ms, seal=seal)
        if isinstance(result, SyncError):
            raise result
        return result

    def write_local_batch(self, items: Sequence[tuple[str, str, Edit]], *, operator: str | None, now_ms: int,
                          seal: Sealer) -> list[Change | SyncError]:
        """Many edits in one transaction under one batch signature.

        An edit that raises SyncError (bad input, no such record) is left out
        and its error returned in its place; the others are written. Anything
        else (the sealer failing, the database failing) rolls back all of them.
        """
        results: list[Change | SyncError] = []
        changes: list[Change] = []
        existed: dict[tuple[str, str], bool] = {}
        latest: dict[tuple[str, str], RecordState] = {}
        with self._lock, self.engine.begin() as conn:
            seq = conn.execute(select(func.max(log.c.seq)).where(log.c.origin == self.owner)).scalar() or 0
            loaded = self._load_many(conn, [(kind, record_id) for kind, record_id, _ in items])
            for kind, record_id, edit in items:
                key = (kind, record_id)
                if key not in latest:
                    current = loaded[key]
                    existed[key] = current is not None
                else:
                    current = latest[key]
                try:
                    op, values = edit(current)
                except SyncError as err:
                    results.append(err)
                    continue
                seq += 1
                self._hlc = at = hlc.tick(self._hlc, now_ms, self.owner)
                change = local_write(current, kind=kind, record_id=record_id, values=values, node=self.owner,
                                     seq=seq, at=at, op=op, operator=operator)
                latest[key] = change.state
                changes.append(change)
                results.append(change)
            if changes:
                bodies = [c.to_body() for c in changes]
                seals = seal(bodies)
                self._append_many(conn, [(c, Envelope(b, s)) for c, b, s in zip(changes, bodies, seals)],
                                  via="local", now_ms=now_ms)
                self._save_many(conn, [(st, loaded[k]) for k, st in latest.items()], now_ms)
            self._write_acks(conn)
        if changes:
            self._notify()
        return results

    def _append_many(self, conn, items: Sequence[tuple[Change | Head, Envelope]], *, via: str, now_ms: int,  # type: ignore[no-untyped-def]
                     digests: Sequence[bytes] | None = None) -> None:
        """Append changes to the log with the next lsns (we hold the write lock, so lsns are ours to hand out)."""
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
                seal.key_id, seal.signature, seal.index, seal.size, b"".join(seal.proof), _routes_text(routes),
                leaves_node(routes, Identity.parse(change.origin).name), via, now_ms,
            ))
            if self.index_routes:
                dests += [(p, lsn) for p in sorted(routes)]
        _insert_rows(conn, log, _LOG_COLUMNS, rows)
        if dests:
            _insert_rows(conn, log_dest, ("province", "lsn"), dests)

    def _notify(self) -> None:
        with self.appended:
            self.generation += 1
            self.appended.notify_all()

    def wait_for_append(self, seen_generation: int, timeout: float) -> None:
        """Block until something is appended after ``seen_generation`` (or timeout)."""
        with self.appended:
            if self.generation == seen_generation:
                self.appended.wait(timeout)

    # -- remote changes --------------------------------------------------------
    def ingest(self, accepted: Sequence[Accepted], refused: Sequence[Refused], *, via: str, now_ms: int,
               cursor: tuple[str, int] | None = None) -> IngestResult:
        result = IngestResult()
        with self._lock, self.engine.begin() as conn:
            for r in refused:
                self._quarantine(conn, r, via, now_ms)
                result.quarantined += 1
            seen = self._digests(conn, [(a.change.origin, a.change.seq) for a in accepted])
            fresh: list[Accepted] = []
            for a in accepted:
                ch = a.change
                digest = hashlib.sha256(a.envelope.body).digest()
                known = seen.get((ch.origin, ch.seq))
                if known is not None:
                    if known == digest:
                        result.duplicates += 1
                    else:
                        err = Equivocation(f"{ch.origin} seq {ch.seq} was already received with other content")
                        # Same "<category>: <detail>" form as node.intake.reason gives every other refusal.
                        self._quarantine(conn, Refused(a.envelope, f"equivocation: {err}", ch.origin, ch.seq,
                                                       ch.kind, ch.record_id), via, now_ms)
                        result.quarantined += 1
                    continue
                seen[(ch.origin, ch.seq)] = digest  # a duplicate inside the batch
                fresh.append(a)
                if ch.at.wall_ms <= now_ms + MAX_CLOCK_LEAD_MS:
                    # A peer's clock far ahead (broken, or hostile) must not drag ours along:
                    # its change still merges; only our own timestamps ignore it.
                    self._hlc = hlc.observe(self._hlc, ch.at, now_ms, self.owner)
            self._append_many(conn, [(a.change, a.envelope) for a in fresh], via=via, now_ms=now_ms,
                              digests=[seen[(a.change.origin, a.change.seq)] for a in fresh])
            result.applied = len(fresh)
            if self.hold_records and fresh:
                priors = self._load_many(conn, [(a.change.kind, a.change.record_id) for a in fresh])
                states = dict(priors)
                for a in fresh:
                    ch = a.change
                    key = (ch.kind, ch.record_id)
                    outcome = apply(states[key], ch)
                    states[key] = outcome.state
                    result.opened += [(ch.kind, ch.record_id, f) for f in outcome.opened]
                self._save_many(conn, [(st, priors[k]) for k, st in states.items() if st is not None], now_ms)
            self._note_origins(conn, fresh, now_ms)
            if cursor is not None:
                self._set_cursor(conn, cursor[0], cursor[1], now_ms)
            self._write_acks(conn)
        self.arrivals.extend((a.change.origin, a.change.at.wall_ms, now_ms) for a in fresh)
        if result.applied:
            self._notify()
        return result

    def _digests(self, conn, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], bytes]:  # type: ignore[no-untyped-def]
        """Digests of the changes among ``keys`` already in the log."""
        out: dict[tuple[str, int], bytes] = {}
        by_origin: dict[str, list[int]] = {}
        for origin, seq in keys:
            by_origin.setdefault(origin, []).append(seq)
        for origin, seqs in by_origin.items():
            for i in range(0, len(seqs), 500):
                q = select(log.c.seq, log.c.digest).where(and_(log.c.origin == origin, log.c.seq.in_(seqs[i:i + 500])))
                for seq, digest in conn.execute(q):
                    out[(origin, seq)] = bytes(digest)
        return out

    def _quarantine(self, conn, r: Refused, peer: str, now_ms: int) -> None:  # type: ignore[no-untyped-def]
        # Every text here may come straight from a peer's bytes (a forged origin, a reason quoting
        # it): make it storable on every backend, or one bad change would abort the whole batch.
        conn.execute(insert(quarantine).values(
            received_ms=now_ms, peer=_storable(peer, _Q.peer), origin=_storable(r.origin, _Q.origin),
            seq=r.seq, kind=_storable(r.kind, _Q.kind), record_id=_storable(r.record_id, _Q.record_id),
            reason=_storable(r.reason, 2000), body=r.envelope.body,
            key_id=_storable(r.envelope.seal.key_id, _Q.key_id), signature=r.envelope.seal.signature,
        ))

    def quarantined(self, *, limit: int = 1000) -> list[QuarantineEntry]:
        q = select(quarantine.c.id, quarantine.c.received_ms, quarantine.c.peer, quarantine.c.origin,
                   quarantine.c.seq, quarantine.c.kind, quarantine.c.record_id, quarantine.c.reason)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(quarantine.c.id.desc()).limit(limit)).all()
        return [QuarantineEntry(*r) for r in rows]

    def quarantine_body(self, entry_id: int) -> bytes:
        with self.engine.connect() as conn:
            raw = conn.execute(select(quarantine.c.body).where(quarantine.c.id == entry_id)).scalar()
        if raw is None:
            raise NotFound(f"no quarantined change {entry_id}")
        return bytes(raw)

    def quarantined_by_origin(self) -> dict[str, int]:
        q = select(quarantine.c.origin, func.count()).where(quarantine.c.origin.is_not(None)).group_by(quarantine.c.origin)
        with self.engine.connect() as conn:
            return {origin: int(n) for origin, n in conn.execute(q)}

    def count_quarantined(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(quarantine)).scalar() or 0)

    # -- cursors -------------------------------------------------------------------
    def _set_cursor(self, conn, name: str, value: int, now_ms: int) -> None:  # type: ignore[no-untyped-def]
        done = conn.execute(update(cursors).where(cursors.c.name == name).values(value=value, updated_ms=now_ms))
        if done.rowcount == 0:
            conn.execute(insert(cursors).values(name=name, value=value, updated_ms=now_ms))

    def set_cursor(self, name: str, value: int, now_ms: int) -> None:
        with self._lock, self.engine.begin() as conn:
            with self._acks_lock:
                self._acks.pop(name, None)  # this write supersedes a noted ack
            self._set_cursor(conn, name, value, now_ms)

    def note_ack(self, name: str, value: int, now_ms: int) -> None:
        """Record a peer's acknowledgement (how far it has durably taken what we sent).

        Not a transaction of its own: acks arrive once per batch on every stream, and an
        fsync'd commit each would hold the write lock as long as the batches themselves.
        The value rides along with the next ingest or local write, or is written by a
        background flush within ``ACK_FLUSH_S``. Losing the latest few to a crash only
        means resending batches the peer already holds, which it counts as duplicates.
        """
        with self._acks_lock:
            self._acks[name] = (value, now_ms)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_acks_loop, name="ack-flush", daemon=True)
                self._flusher.start()

    def flush_acks(self) -> None:
        """Write noted acks now (the flush loop, and close)."""
        with self._acks_lock:
            if not self._acks:
                return
        with self._lock, self.engine.begin() as conn:
            self._write_acks(conn)

    def _write_acks(self, conn) -> None:  # type: ignore[no-untyped-def]
        with self._acks_lock:
            pending, self._acks = self._acks, {}
        for name, (value, at_ms) in pending.items():
            self._set_cursor(conn, name, value, at_ms)

    def _flush_acks_loop(self) -> None:
        while not self._closed.wait(ACK_FLUSH_S):
            try:
                self.flush_acks()
            except Exception:  # noqa: BLE001 - a locked or full store: the acks wait for the next try
                pass

    def cursor(self, name: str) -> int:
        with self._acks_lock:
            if name in self._acks:
                return self._acks[name][0]
        with self.engine.connect() as conn:
            return int(conn.execute(select(cursors.c.value).where(cursors.c.name == name)).scalar() or 0)

    def cursors(self, prefix: str = "") -> dict[str, tuple[int, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(cursors).where(cursors.c.name.startswith(prefix))).all()
        out = {r.name: (r.value, r.updated_ms) for r in rows}
        with self._acks_lock:
            out.update((name, ack) for name, ack in self._acks.items() if name.startswith(prefix))
        return out

    # -- the log ---------------------------------------------------------------------
    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(log.c.seq)).where(log.c.origin == self.owner)).scalar() or 0)

    def last_lsn(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(log.c.lsn))).scalar() or 0)

    def outbox(self, after_seq: int, limit: int = 500) -> list[LogEntry]:
        """Our own changes that must leave this node, after the acknowledged sequence."""
        q = (select(*_ENTRY_COLUMNS).where(and_(log.c.origin == self.owner, log.c.shared.is_(True), log.c.seq > after_seq))
             .order_by(log.c.seq).limit(limit))
        with self.engine.connect() as conn:
            return [_row_entry(r) for r in conn.execute(q)]

    def outbox_stats(self, after_seq: int) -> tuple[int, int | None]:
        """(changes waiting, received_ms of the oldest) beyond ``after_seq``."""
        q = select(func.count(), func.min(log.c.received_ms)).where(
            and_(log.c.origin == self.owner, log.c.shared.is_(True), log.c.seq > after_seq))
        with self.engine.connect() as conn:
            n, oldest = conn.execute(q).one()
        return int(n or 0), oldest

    def _log_query(self, after_lsn: int, upto: int, flt: Filter | None, not_via: str | None):  # type: ignore[no-untyped-def]
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

    def read_log(self, after_lsn: int, *, flt: Filter | None = None, not_via: str | None = None,
                 limit: int = 500) -> tuple[list[LogEntry], int]:
        """Entries after ``after_lsn`` that ``flt`` admits, and the lsn scanned up to.

        The returned position may be past the last entry: the filtered-out
        stretch counts as delivered, so the subscriber never re-scans it.
        """
        with self.engine.connect() as conn:
            upto = int(conn.execute(select(func.max(log.c.lsn))).scalar() or 0)
            if upto <= after_lsn:
                return [], after_lsn
            q = select(*_ENTRY_COLUMNS).where(self._log_query(after_lsn, upto, flt, not_via)).order_by(log.c.lsn).limit(limit)
            rows = [_row_entry(r) for r in conn.execute(q)]
        if len(rows) == limit:
            return rows, rows[-1].lsn
        return rows, upto

    def pending(self, after_lsn: int, *, flt: Filter | None = None, not_via: str | None = None) -> tuple[int, int | None]:
        """(entries waiting, received_ms of the oldest) for a subscriber at ``after_lsn``."""
        with self.engine.connect() as conn:
            upto = int(conn.execute(select(func.max(log.c.lsn))).scalar() or 0)
            q = select(func.count(), func.min(log.c.received_ms)).where(
                self._log_query(after_lsn, upto, flt, not_via))
            n, oldest = conn.execute(q).one()
        return int(n or 0), oldest

    def recent_arrivals(self, last: int) -> list[tuple[str, int, int]]:
        """(origin, written at ms, applied ms) of the last ``last`` changes received since this process started."""
        return list(self.arrivals)[-last:]

    def history(self, kind: str, record_id: str) -> list[LogEntry]:
        q = select(*_ENTRY_COLUMNS).where(and_(log.c.kind == kind, log.c.record_id == record_id)).order_by(log.c.lsn)
        with self.engine.connect() as conn:
            return [_row_entry(r) for r in conn.execute(q)]

    def _note_origins(self, conn, fresh: Sequence[Accepted], now_ms: int) -> None:  # type: ignore[no-untyped-def]
        """Keep, per origin, the highest seq applied and that change's write time (for lag)."""
        best: dict[str, tuple[int, int]] = {}
        for a in fresh:
            ch = a.change
            if ch.seq > best.get(ch.origin, (0, 0))[0]:
                best[ch.origin] = (ch.seq, ch.at.wall_ms)
        known = {name: value for name, value in conn.execute(
            select(counters.c.name, counters.c.value).where(counters.c.name.in_([f"origin:{o}" for o in best])))}
        for origin, (seq, at_ms) in best.items():
            if known.get(f"origin:{origin}", 0) >= seq:
                continue  # an older change arriving late (another path): the summary stands
            self._set_counter(conn, f"origin:{origin}", seq, at_ms)  # last seq, its write time
            self._set_counter(conn, f"arrived:{origin}", max(0, now_ms - at_ms), now_ms)  # its lag, arrival

    def last_applied(self) -> dict[str, tuple[int, int, int]]:
        """Per origin: (last seq, its write time ms, when we received it ms)."""
        arrived = self._counters("arrived:")
        out = {}
        for name, (seq, at_ms) in self._counters("origin:").items():
            origin = name.removeprefix("origin:")
            out[origin] = (seq, at_ms, arrived.get(f"arrived:{origin}", (0, at_ms))[1])
        return out

    # -- keys ------------------------------------------------------------------------
    def save_key(self, key_id: str, identity: str, cert_der: bytes, now_ms: int) -> None:
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(keys.c.key_id).where(keys.c.key_id == key_id)).first() is None:
                conn.execute(insert(keys).values(key_id=key_id, identity=identity, cert_der=cert_der, added_ms=now_ms))

    def load_keys(self) -> list[bytes]:
        with self.engine.connect() as conn:
            return [bytes(r[0]) for r in conn.execute(select(keys.c.cert_der))]
