"""The durable store of a node or hub, behind one interface for every backend.

Contract (tested by tests/contract against SQLite and PostgreSQL):
  * ``write_local`` is one transaction: the new record state and the signed
    change (next sequence number) land together or not at all.
  * ``ingest`` is one transaction per batch: accepted changes are appended to
    the log (and merged into records, and indexed by route on hubs), refused
    ones go to quarantine with their reason, and the pull cursor moves, all
    together. What is fresh, duplicate or equivocating is decided by the pure
    plan in core.intakeplan: a change whose digest is already in the log changes
    nothing; one with the same origin and seq as a logged change but other bytes
    is equivocation, kept and merged as a concurrent write, and noted in
    ``equivocations`` (the origin is flagged in status).
  * Log sequence numbers (lsn) become visible in increasing order: one process
    owns a store and serialises its writes, so a reader that has seen lsn N
    has seen every lsn below N. Subscribers rely on this to never skip.
Errors are returned as exceptions from core.errors; nothing here logs. An outage
of the database itself (server down or restarting, file locked, disk full) is
raised as ``core.errors.StoreUnavailable`` (an ``Unavailable``: retryable, and
nothing was written) naming the database but never its password, and noted in
``Store.health`` (store.health); no SQLAlchemy exception type leaves the store
for one. Every public method below may raise it; each docstring says what else.

The store holds no policy of its own: when to write peers' acknowledgements
(runtime.acks) and which arrivals to keep for delivery figures (runtime.stats)
are the runtime's; the store writes what it is given, in the transaction it is
given it to.
"""


from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence, cast

from sqlalchemy import Engine, insert, select, update
from sqlalchemy import Connection

from core import hlc, intakeplan, relay
from core.apply import apply, local_write
from core.change import Change, Envelope, Head
from core.errors import LocalError, Malformed, NotFound, SyncError, Unauthorised, ValidationError
from core.identity import Identity
from core.intakeplan import Arrival, Twins
from core.kinds import KINDS, get_kind, graph_rules
from core.merkle import Seal
from core.receipts import Receipt
from core.record import RecordState
from core.routing import Filter
from core.claims import is_claim, settled_by
from core import baseline
from core.delta import SALT_BYTES, Delta
from core.graph import DUPLICATE, HELD, PARKED, REFUSED, RecordGraph
from core.graphstate import clocks, state_of
from core.clock import VectorClock
from core.record import DELETED
from core.record import Version as RecordVersion
from store import (changelog, claims, counters, delays, deltas, duplicates, equivocations, projections, quarantine,
                   receipts, records, rekey, tallies, upstream)
from store.changelog import LogEntry
from store.db import migrate, open_engine
from store.health import Health, watch
from store.quarantine import QuarantineEntry
from store.schema import cursors, keys, log, meta

__all__ = ["Accepted", "IngestResult", "LogEntry", "QuarantineEntry", "Refused", "Store"]

MAX_CLOCK_LEAD_MS = 24 * 3600 * 1000
NATIONAL = "national"  # how a delta's chain and receipts name the national hub (core.receipts)
Sealer = Callable[[Sequence[bytes]], list[Seal]]
Edit = Callable[[RecordState | None], tuple[str, Mapping[str, object]]]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A change that passed intake: signature verified, author authorised."""

    change: Change | Head | Delta  # a v2 delta's head on regional hubs, which merge nothing; v1: Change
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Refused:
    envelope: Envelope
    reason: str
    origin: str | None = None
    seq: int | None = None
    kind: str | None = None
    record_id: str | None = None
    charged: str | None = None  # whose quarantine share it takes (store.quarantine); None: the peer it came via
    count: int = 1  # changes it stands for (a batch refused whole is one entry for all of them)
    category: str = Malformed.category  # the error class's category, which ``reason`` starts with (core.errors)


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dropped: int = 0  # of the quarantined: over their party's cap, counted and not kept
    opened: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, id, field)
    claims: int = 0  # held apart as claims (core.claims), not merged
    equivocations: list[tuple[str, int]] = field(default_factory=list)  # (origin, seq) signed twice, both kept
    refused: list[tuple[str | None, int | None]] = field(default_factory=list)  # (origin, seq) of each refusal
    last_refusal: str | None = None  # the last refusal's category ("unknown author", ...): no personal data
    # (prior, merged) of the records whose shown routing fields this ingest changed (prior None: new
    # here); kept by province stores only, for the followers' repair (node.refollow)
    rerouted: list[tuple[RecordState | None, RecordState]] = field(default_factory=list)
    # (origin, written ms) of each change applied, in batch order: for delivery-delay figures (runtime.stats)
    arrived: list[tuple[str, int]] = field(default_factory=list)
    parked: int = 0  # v2: verified deltas kept waiting for their history (store.deltas)
    withheld: list[tuple[str, str]] = field(default_factory=list)  # records whose surviving value is not here yet
    released: list[str] = field(default_factory=list)  # v2: ids parked before, held now

    @property
    def held(self) -> int:
        """v2 name of ``applied``: deltas logged now (released ones included)."""
        return self.applied


class Store:
    """One replica's database. ``owner`` is the identity of the process that owns it.

    This class decides transactions, the write lock and notifications; what is
    stored lives in store.records, store.changelog, store.quarantine and
    store.counters. Writes are serialised (one lock per Store); reads run
    beside them and see only committed transactions.
    ``generation`` (bumped after each append) and ``wait_for_append`` let a
    reader sleep until the log grows; ``health`` reports outages.
    """

    def __init__(self, engine: Engine, *, owner: str, index_routes: bool = False, hold_records: bool = True,
                 health: Health | None = None):
        self.engine = engine
        self.health = health or Health()
        if not getattr(engine, "_yipanqi_watched", False):
            watch(engine, self.health)
            engine._yipanqi_watched = True  # type: ignore[attr-defined]  # our marker on a shared engine
        self.owner = owner
        ident = Identity.parse(owner)
        self.province = ident.name if ident.role == "province" else None
        self.index_routes = index_routes
        self.hold_records = hold_records
        self._lock = threading.RLock()
        self.appended = threading.Condition()
        self.generation = 0  # bumped on every append; waiters compare to skip lost wake-ups
        with engine.begin() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == "owner")).scalar()
            if found is None:
                conn.execute(insert(meta).values(key="owner", value=owner))
            elif found != owner:
                raise LocalError(f"database belongs to {found}, not {owner}")
            last_at = changelog.last_write_ms(conn, owner)
            counters.initialise(conn)
        # Past every timestamp we issued before a restart (only the wall part is stored).
        self._hlc = hlc.Timestamp(last_at + 1 if last_at else 0, 0, owner)

    @classmethod
    def open(cls, url: str, *, owner: str, index_routes: bool = False, hold_records: bool = True,
             health: Health | None = None, person_secret: bytes | None = None,
             upgraded: Callable[[str], None] | None = None) -> "Store":
        """Open the store at ``url`` and bring its schema to the latest migration.

        Returns a ready Store. Raises ``StoreUnavailable`` when the database cannot be used (a
        PostgreSQL server not up yet, a file that cannot be opened), ``LocalError`` when the
        database belongs to another owner. With ``person_secret``, a store still marked for the
        person-key re-key is re-keyed first, in one transaction (store.rekey), and ``upgraded`` is
        told what was done (no personal data).
        """
        engine = open_engine(url)
        health = health or Health()
        watch(engine, health)
        engine._yipanqi_watched = True  # type: ignore[attr-defined]  # our marker on a shared engine
        migrate(engine)
        if person_secret is not None:
            with engine.begin() as conn:
                if rekey.pending(conn):
                    report = rekey.run(conn, person_secret)
                    if upgraded is not None:
                        upgraded(f"store upgrade (person keys): {report}")
        return cls(engine, owner=owner, index_routes=index_routes, hold_records=hold_records, health=health)

    def probe(self) -> None:
        """One small write transaction. Returns once the database takes writes again (and marks
        ``health`` ok); raises ``StoreUnavailable`` while it does not. What a paused sync waits on."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "owner").values(value=self.owner))
        self.health.wrote()

    def close(self) -> None:
        """Release the database connections. Idempotent; the Store must not be used afterwards."""
        self.engine.dispose()

    # -- records -------------------------------------------------------------
    def get(self, kind: str, record_id: str) -> RecordState | None:
        """The record ``kind``/``record_id`` as last committed (deleted ones included, as tombstones),
        or None if this replica never held it."""
        with self.engine.connect() as conn:
            state = records.load(conn, kind, record_id)
            if state is not None and not state.deleted:
                return state
            into = deltas.resolve(conn, kind, record_id)  # a record a link took in reads as the one it is part of
            return records.load(conn, kind, into) if into != record_id else state

    def require(self, kind: str, record_id: str) -> RecordState:
        """``get``, but raises ``NotFound`` (naming the record and this store) instead of returning None."""
        state = self.get(kind, record_id)
        if state is None:
            raise NotFound(f"no {kind} record {record_id} on {self.owner}")
        return state

    def iter_records(self, kind: str, *, include_deleted: bool = False, conflicted_only: bool = False,
                     page: int = 500, after: str = "") -> Iterator[RecordState]:
        """All records of ``kind`` whose id sorts after ``after``, in record id order, read ``page``
        at a time (memory stays flat). Live ones only unless ``include_deleted``; with open conflicts
        only if ``conflicted_only``. Each page is its own read: a record committed meanwhile is seen
        if it sorts after the page read so far."""
        while True:
            with self.engine.connect() as conn:
                states = records.page(conn, kind, after, include_deleted=include_deleted,
                                      conflicted_only=conflicted_only, limit=page)
            yield from states
            if len(states) < page:
                return
            after = states[-1].record_id

    def people_by_id_number(self, id_numbers: Sequence[str]) -> dict[str, RecordState]:
        """The person this replica already holds under each 18-character ID number: the live
        record (the first by record id, where legacy duplicates hold a number twice). Numbers
        held by no live person are absent. Deleted records are not held. One indexed probe per
        500 numbers; raises only StoreUnavailable. The one place "is this person here" is
        answered, so a federation-wide key can replace the lookup behind it."""
        with self.engine.connect() as conn:
            return records.people_by_id_number(conn, id_numbers)

    def duplicates(self, page: int = 500) -> Iterator[duplicates.Pair]:
        """Likely duplicate people (store.duplicates): first every pair sharing an ID number, then
        every pair sharing name, birth date and sex with different ID numbers, each in record id
        order. Read page by page in SQL; memory stays flat however many there are."""
        for query in (duplicates.same_id_number, duplicates.same_name_birth_sex):
            with self.engine.connect() as conn:
                batch: list[duplicates.Pair] = []
                for pair in query(conn):
                    batch.append(pair)
                    if len(batch) >= page:
                        yield from batch
                        batch = []
                yield from batch

    def migrant_pairs(self) -> list[tuple[str, str, int]]:
        """(household, residence, live persons) for every pair of provinces a live person lives
        apart in, from the running totals (store.tallies): one query of at most 32 x 31 rows,
        whatever the size of the store. Raises only StoreUnavailable."""
        with self.engine.connect() as conn:
            return [(h, r, int(n)) for h, r, n in tallies.pairs(conn)]

    def flow_counts(self, kind: str = "person") -> list[tuple[str | None, str | None, str | None, int]]:
        """(household, residence, move month, live records) groups of ``kind``, from the
        projection columns that commit with the records; one GROUP BY, no order promised."""
        with self.engine.connect() as conn:
            return records.flow_counts(conn, kind)

    def projected(self, kind: str, where: Mapping[str, object], order_by: Sequence[str] = ()) -> list[dict]:
        """Rows of ``kind``'s side table (store.projections) whose columns equal ``where``.

        Ordered by ``order_by``, then the record id. Raises KeyError for a kind without a
        side table. The rows are as current as the records: both commit together.
        """
        with self.engine.connect() as conn:
            return projections.select_rows(conn, kind, where, order_by)

    def count_records(self, *, conflicted_only: bool = False) -> int:
        """Live records (or live records with open conflicts), from the counters, which commit
        with the records: exact, one row read."""
        name = counters.CONFLICTED if conflicted_only else counters.LIVE
        with self.engine.connect() as conn:
            return counters.read(conn, name).get(name, (0, 0))[0]

    def _save(self, conn: Connection, states: Sequence[tuple[RecordState, RecordState | None]], now_ms: int) -> None:
        live, conflicted = records.save_many(conn, states, now_ms)
        projections.save(conn, [state for state, _ in states])  # per-kind side tables, same transaction
        tallies.bump(conn, tallies.deltas(states), now_ms)  # migrants per province pair, same transaction
        counters.bump(conn, counters.LIVE, live)
        counters.bump(conn, counters.CONFLICTED, conflicted)

    # -- local writes ----------------------------------------------------------
    def _own_change(self, current: RecordState | None, *, kind: str, record_id: str, values: Mapping[str, object],
                    seq: int, op: str, operator: str | None, now_ms: int) -> Change:
        """One change of ours at ``seq``, stamped with the next HLC time."""
        self._hlc = at = hlc.tick(self._hlc, now_ms, self.owner)
        return local_write(current, kind=kind, record_id=record_id, values=values, node=self.owner,
                           seq=seq, at=at, op=op, operator=operator)

    def _log_own(self, conn: Connection, changes: Sequence[Change], saves: Sequence[tuple[RecordState, RecordState | None]],
                 now_ms: int, seal: Sealer) -> None:
        """Our own changes into the log under one batch signature, and the states they make saved,
        in the caller's transaction."""
        bodies = [c.to_body() for c in changes]
        seals = seal(bodies)
        changelog.append(conn, [(c, Envelope(b, s)) for c, b, s in zip(changes, bodies, seals)],
                         via="local", now_ms=now_ms, index_routes=self.index_routes)
        self._save(conn, saves, now_ms)

    def write_local(self, kind: str, record_id: str, edit: Edit, *, operator: str | None,
                    now_ms: int, seal: Sealer) -> Written:
        """Apply an operator's edit as one signed delta of ours, in one transaction
        (``write_local_batch`` of one item). Returns the delta written; raises the ``SyncError`` the edit
        raised (nothing written), ``StoreUnavailable`` (nothing written) or what ``seal`` raised."""
        (result,) = self.write_local_batch([(kind, record_id, edit)], operator=operator, now_ms=now_ms, seal=seal)
        if isinstance(result, SyncError):
            raise result
        return result

    def write_local_batch(self, items: Sequence[tuple[str, str, Edit]], *, operator: str | None, now_ms: int,
                          seal: Sealer) -> list[Written | SyncError]:
        """Many edits in one transaction under one batch signature, each as one delta of ours.

        ``edit(current)`` gets the record as the batch has it so far (None if new) and returns
        (op, values): the fields this write sets. Each delta depends on the heads of the record's
        history here (``core.graph.RecordGraph.write``); a delta that makes a province newly
        involved in its record carries the history that province needs (core.relay). Returns one
        result per item, in order: the ``Written`` delta, or the ``SyncError`` the edit raised (bad
        input, no such record) or the graph's refusal (``LocalError``), that item left out and the
        others written. Our deltas take consecutive seqs after ``last_seq`` in item order, with
        increasing HLC times; they, the records they make and the projections commit together.
        Anything else (the sealer failing, ``StoreUnavailable``) rolls all of them back and is raised.
        Wakes ``wait_for_append`` waiters when something was written.
        """
        with self._lock, self.engine.begin() as conn:
            results = self._write(conn, [(kind, record_id, edit, (), ()) for kind, record_id, edit in items],
                                  operator=operator, now_ms=now_ms, seal=seal)
        self.health.wrote()
        if any(isinstance(r, Written) for r in results):
            self._notify()
        return results

    def _write(self, conn: Connection, items: Sequence[tuple[str, str, Edit, Sequence[str], Sequence[str]]], *,
               operator: str | None, now_ms: int, seal: Sealer) -> list[Written | SyncError]:
        """``write_local_batch`` in the caller's transaction; each item is (kind, record id, edit,
        the claims it accepts, the records it takes in)."""
        results: list[Written | SyncError] = []
        written: list[tuple[str, Delta, bytes, RecordGraph, list[tuple[str, frozenset[str]]]]] = []
        own = self.province
        seq = changelog.last_seq(conn, self.owner)
        graphs = self._graphs(conn, [(kind, record_id) for kind, record_id, *_ in items])
        priors = records.load_many(conn, sorted({(g.kind, g.record_id) for g in graphs.values()}
                                                | {(kind, m) for kind, _, _, _, ms in items for m in ms}))
        shown: dict[int, RecordState | None] = {}
        chain_start: dict[str, int] = {}  # last counter per destination when the batch began (core.receipts)
        taken: dict[str, int] = {}  # and as this batch has taken them
        owed: list[tuple[dict[str, int], str, int]] = []  # (chain, delta id, seq) of each delta written

        def chain(routes: frozenset[str]) -> dict[str, int]:
            """The next counter per destination of a delta with these routes: each province it
            goes to but ours, and the national hub when it leaves our province."""
            dests = sorted(routes - {own}) if own is not None else []
            if dests:
                dests.append(NATIONAL)
            missing = [d for d in dests if d not in taken]
            if missing:
                found = receipts.last_counters(conn, self.owner, 0, missing)
                chain_start.update(found)
                taken.update(found)
            return {d: taken[d] + 1 for d in dests}

        for kind, record_id, edit, accepts, merges in items:
            graph = graphs[(kind, record_id)]
            if merges and not set(merges) <= graph.related:
                deltas.extend(conn, graph, merges)
                graph.related.update(merges)
            if graph.awaits_baseline:
                results.append(LocalError(f"{kind} {record_id} has v1 history here; it needs its v2 baseline "
                                          "first (yipanqi upgrade v2 at its household province)"))
                continue
            try:
                if id(graph) not in shown:
                    shown[id(graph)] = _shown(graph)
                op, values = edit(shown[id(graph)])
            except SyncError as err:
                results.append(err)
                continue
            before = graph.view().involved if graph.held else frozenset()
            if graph.held:  # a delta is never stamped before what it depends on (after a restart, say)
                latest = max(d.at for d in graph.held.values())
                if latest > self._hlc:
                    self._hlc = latest
            self._hlc = at = hlc.tick(self._hlc, now_ms, self.owner)
            try:
                did, delta, body = graph.write(values, origin=self.owner, epoch=0, seq=seq + 1, at=at, op=op,
                                               operator=operator, accepts=tuple(accepts),
                                               merges=tuple(sorted(merges)), now_ms=now_ms, salt=_salt, chain=chain)
            except ValueError as err:
                results.append(LocalError(f"{kind} {record_id}: {err}"))
                continue
            seq += 1
            taken.update(delta.chain)  # taken only by a delta written: a refused write leaves no gap
            # Owed to each province it goes to until that province's signed receipt covers it (the
            # national hub signs no receipts: it has no signing key).
            owed.append(({d: n for d, n in delta.chain.items() if d != NATIONAL}, did, delta.seq))
            newly = graph.view().involved - before - {own} if before else frozenset()
            relayed = [(d, names) for d, _, names in graph.relay() if d != did] if newly else []
            shown[id(graph)] = state = _shown(graph) or state_of(graph)
            written.append((did, delta, body, graph, relayed))
            results.append(Written(did, delta, state))
        if not written:
            return results
        receipts.take_counters(conn, self.owner, 0, {d: n for d, n in taken.items() if n != chain_start.get(d)},
                               chain_start)
        receipts.owe_many(conn, self.owner, 0, owed, now_ms=now_ms)
        seals = seal([body for _, _, body, _, _ in written])
        ours = {did: Envelope(body, sealed, delta.openings())
                for (did, delta, body, _, _), sealed in zip(written, seals)}
        self._log_deltas(conn, [(delta, self._with_relay(conn, ours[did], graph, relayed, ours), did, "local")
                                for did, delta, _, graph, relayed in written], now_ms)
        if self.hold_records:
            touched = {(g.kind, g.record_id): g for _, _, _, g, _ in written}
            saves = [(shown[id(g)] or state_of(g), priors.get(k)) for k, g in touched.items()]
            saves += _taken_in(written, priors)
            self._save(conn, saves, now_ms)
        return results

    def _graphs(self, conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RecordGraph]:
        """The graph of the record each (kind, record id) is part of now (an alias took it in, or
        itself), one object per record however many keys name it."""
        out: dict[tuple[str, str], RecordGraph] = {}
        for kind in sorted({k for k, _ in keys}):
            resolved = deltas.resolve_many(conn, kind, [rid for k, rid in keys if k == kind])
            loaded = deltas.load_many(conn, kind, sorted(set(resolved.values())), graph_rules(kind))
            out.update(((kind, rid), loaded[into]) for rid, into in resolved.items())
        return out

    def _with_relay(self, conn: Connection, env: Envelope, graph: RecordGraph,
                    relayed: Sequence[tuple[str, frozenset[str]]], ours: Mapping[str, Envelope]) -> Envelope:
        """``env`` carrying the history a newly involved province needs (core.relay): each delta with
        its writer's seal, opening only ``names`` (superseded values stay behind their commitments)."""
        if not relayed:
            return env
        relayed = list(relayed)[-relay.MAX_RELAYED:]
        stored = changelog.envelopes(conn, graph.kind, sorted({graph.record_id} | graph.related),
                                     [d for d, _ in relayed if d not in ours])
        bundle = []
        for did, names in relayed:
            held = ours.get(did) or stored.get(did)
            if held is None:
                continue  # not in the log (cannot happen for a held delta): the receiver parks and shows it
            bundle.append(Envelope(held.body, held.seal, graph.held[did].openings(sorted(names))))
        return Envelope(env.body, env.seal, env.openings, tuple(bundle))

    def _notify(self) -> None:
        with self.appended:
            self.generation += 1
            self.appended.notify_all()

    def wait_for_append(self, seen_generation: int, timeout: float) -> None:
        """Block until something is appended after ``seen_generation`` (read ``generation`` before
        reading the log), or ``timeout`` seconds pass. Returns None either way: re-read to see which."""
        with self.appended:
            if self.generation == seen_generation:
                self.appended.wait(timeout)

    # -- remote changes --------------------------------------------------------
    def ingest(self, accepted: Sequence[Accepted] | Sequence[ReceivedDelta], refused: Sequence[Refused], *, via: str, now_ms: int,
               cursor: tuple[str, int] | None = None,
               acks: Mapping[str, tuple[int, int]] | None = None) -> IngestResult:
        """Store one received batch in one transaction, and return what it did (``IngestResult``).

        v2: ``accepted`` are ``ReceivedDelta`` (runtime.intake): a store that holds records decides
        them on their history (``receive_deltas``); a regional hub's keeps each delta it was sent
        (not those relayed inside another, which travel in their carrier) and routes it by its
        signed head, as below. v1 ``Accepted`` changes (pre-v2 stores, the v1 core's tests):

        ``accepted`` passed intake (runtime.intake); each is appended to the log once: a change
        already held (same origin and seq, same bytes) is counted as a duplicate, the same origin
        and seq with other bytes is refused as equivocation. Records merge the new changes in batch
        order (province stores and the national hub), refusals go to quarantine within each
        party's cap (store.quarantine), and ``cursor`` (name, value) and every noted ack in
        ``acks`` (name -> (value, ms): runtime.acks) are written, all in the same transaction:
        all of it commits, or nothing does. Raises ``StoreUnavailable`` (nothing written) when the
        database cannot be used. New log entries get increasing lsns in batch order and wake
        ``wait_for_append`` waiters. ``IngestResult.arrived`` lists (origin, written ms) of each
        change applied, for delivery-delay figures kept by the caller.
        """
        if accepted and isinstance(accepted[0], ReceivedDelta):  # v2 deltas (runtime.intake)
            received = cast(Sequence[ReceivedDelta], accepted)
            if self.hold_records:
                return self.receive_deltas(received, refused, via=via, now_ms=now_ms, cursor=cursor, acks=acks)
            heads = [Accepted(r.delta, r.envelope) for r in received if not r.relayed]
        elif not accepted and self.hold_records and refused:
            return self.receive_deltas([], refused, via=via, now_ms=now_ms, cursor=cursor, acks=acks)
        else:
            heads = list(cast(Sequence[Accepted], accepted))
        return self._ingest_heads(heads, refused, via=via, now_ms=now_ms, cursor=cursor, acks=acks)

    def _ingest_heads(self, accepted: Sequence[Accepted], refused: Sequence[Refused], *, via: str, now_ms: int,
                      cursor: tuple[str, int] | None,
                      acks: Mapping[str, tuple[int, int]] | None) -> IngestResult:
        """``ingest`` of changes decided by their heads (a regional hub's deltas; v1 changes)."""
        result = IngestResult()
        with self._lock, self.engine.begin() as conn:
            bad = list(refused)
            sha256 = hashlib.sha256
            arrivals = [Arrival(a.change.origin, a.change.seq, sha256(a.envelope.body).digest(), a.change.at)
                        for a in accepted]
            held_digests = changelog.digests(conn, [(x.origin, x.seq) for x in arrivals])
            todo = intakeplan.plan(arrivals, held_digests, self._hlc, now_ms=now_ms, lead_ms=MAX_CLOCK_LEAD_MS,
                                   node=self.owner)
            fresh = [accepted[i] for i in todo.fresh]
            result.duplicates = len(todo.duplicates)
            if todo.twins:  # kept, both of them, as concurrent writes; the origin is flagged (status)
                equivocations.note(conn, todo.twins, now_ms)
                result.equivocations = [(t.origin, t.seq) for t in todo.twins]
            if bad:
                result.quarantined, result.dropped = quarantine.add_capped(conn, bad, peer=via, now_ms=now_ms)
                result.refused = [(r.origin, r.seq) for r in bad]
                result.last_refusal = bad[-1].category[:64]
            changelog.append(conn, [(a.change, a.envelope) for a in fresh], via=via, now_ms=now_ms,
                             index_routes=self.index_routes,
                             digests=[arrivals[i].digest for i in todo.fresh])
            result.applied = len(fresh)
            if self.hold_records:  # the replicas that assess; a regional hub's hot path skips it
                delays.add(conn, ((a.change.origin, a.change.at.wall_ms) for a in fresh), now_ms)
            if self.hold_records and fresh:
                priors = records.load_many(conn, [(a.change.kind, a.change.record_id) for a in fresh])
                states = dict(priors)
                held = claims.open_by_record(conn, [k for k, st in priors.items() if st is not None])
                new_claims: list[tuple[Change, bytes]] = []
                for a in fresh:
                    ch = a.change
                    key = (ch.kind, ch.record_id)
                    if is_claim(states[key], ch, open_claim=ch.origin in held.get(key, ())):  # type: ignore[arg-type]  # hold_records: full changes only
                        new_claims.append((ch, a.envelope.body))  # type: ignore[arg-type]  # as above
                        held.setdefault(key, set()).add(ch.origin)
                        continue
                    outcome = apply(states[key], ch)  # type: ignore[arg-type]  # as above
                    states[key] = outcome.state
                    result.opened += [(ch.kind, ch.record_id, f) for f in outcome.opened]
                claims.add(conn, new_claims, now_ms)
                result.claims = len(new_claims)
                for key, claimers in held.items():  # an acceptance arriving: the claim merges here too
                    st = states.get(key)
                    if st is None:
                        continue
                    for claimer in sorted(claimers):
                        if settled_by(st, claimer):
                            rows = claims.open_changes(conn, key[0], key[1], claimer)
                            before = set(st.conflicts())
                            for _, ch in rows:
                                st = apply(st, ch).state
                            result.opened += [(key[0], key[1], f) for f in sorted(set(st.conflicts()) - before)]
                            claims.decide(conn, [cid for cid, _ in rows], claims.MERGED, "merged on receipt", now_ms)
                    states[key] = st
                self._save(conn, [(st, priors[k]) for k, st in states.items() if st is not None], now_ms)
                if self.province is not None:
                    result.rerouted = [(priors[k], st) for k, st in states.items()
                                       if st is not None and _rerouted(priors[k], st)]
            counters.note_origins(conn, ((a.change.origin, a.change.seq, a.change.at.wall_ms) for a in fresh), now_ms)
            if cursor is not None:
                self._set_cursor(conn, cursor[0], cursor[1], now_ms)
            for name, (value, at_ms) in (acks or {}).items():
                self._set_cursor(conn, name, value, at_ms)
            self._hlc = todo.clock  # under the lock: a local write between must not see it go back
        self.health.wrote()
        result.arrived = [(a.change.origin, a.change.at.wall_ms) for a in fresh]
        if result.applied:
            self._notify()
        return result


    # -- claims (core.claims) -------------------------------------------------------
    def list_claims(self, *, status: str | None = None) -> list[claims.Claim]:
        """Claims held apart (core.claims), oldest first (claim id order); only those of
        ``status`` (open, accepted, refused, merged) if given."""
        with self.engine.connect() as conn:
            return claims.listing(conn, status=status)

    def _open_claim(self, conn: Connection, claim_id: int) -> claims.Claim:
        claim = claims.get(conn, claim_id)
        if claim is None:
            raise NotFound(f"no claim {claim_id} on {self.owner}")
        if claim.status != claims.OPEN:
            raise LocalError(f"claim {claim_id} is already {claim.status}")
        return claim

    def accept_claim(self, claim_id: int, *, operator: str | None, now_ms: int, seal: Sealer) -> Written:
        """Accept an open claim: one signed ``accept`` delta of ours that names the claim's create
        (core.graph), so the claimer's versions count and the record involves, and reaches, the
        claimer (with the history it needs, core.relay).

        One transaction: the delta, the record and the claim rows' decision commit together.
        Returns the delta written. Raises ``NotFound`` (no such claim or record), ``LocalError``
        (the claim is already decided, or the history refuses the accept) or ``StoreUnavailable``;
        nothing is written then.
        """
        with self._lock, self.engine.begin() as conn:
            claim = self._open_claim(conn, claim_id)
            ids = claims.open_ids(conn, claim_id)
            (result,) = self._write(conn, [(claim.kind, claim.record_id, lambda current: ("accept", {}), ids, ())],
                                    operator=operator, now_ms=now_ms, seal=seal)
            if isinstance(result, SyncError):
                raise result
            claims.decide(conn, [claim_id], claims.ACCEPTED, operator or self.owner, now_ms)
        self.health.wrote()
        self._notify()
        return result

    def link_local(self, kind: str, from_id: str, into: str, *, check: Callable[[RecordState, RecordState | None], None],
                   operator: str | None, now_ms: int, seal: Sealer,
                   values: Callable[[RecordState], Mapping[str, object]] = lambda merged: {}
                   ) -> Written:
        """``person link``: one signed ``alias`` delta of ours on ``into`` that takes ``from_id`` in
        (core.graph): the record keeps every version of both (concurrent values stay as
        conflicts), the fields ``values(source)`` gives are written with it, and reads of
        ``from_id`` resolve to ``into`` from then on. A target not held here is registered first
        (one create of ours, with the source's routing values), in the same transaction.
        ``check(source, target)`` refuses a link this node may not make before anything is written.
        Returns the alias delta. Raises ``NotFound`` (no ``from_id``), what ``check`` raises,
        ``LocalError`` (the history refuses it) or ``StoreUnavailable``; nothing is written then."""
        with self._lock, self.engine.begin() as conn:
            loaded = records.load_many(conn, [(kind, from_id), (kind, into)])
            source, target = loaded[(kind, from_id)], loaded[(kind, into)]
            if source is None:
                raise NotFound(f"no {kind} record {from_id} on {self.owner}")
            check(source, target)
            items: list[tuple[str, str, Edit, Sequence[str], Sequence[str]]] = []
            if target is None:
                routing = {f: v for f, v in source.values().items() if f in get_kind(kind).routing_fields}
                items.append((kind, into, lambda current: ("create", {**routing, **values(source)}), (), ()))
            items.append((kind, into, lambda current: ("alias", {} if target is None else dict(values(source))),
                          (), (from_id,)))
            results = self._write(conn, items, operator=operator, now_ms=now_ms, seal=seal)
            for r in results:
                if isinstance(r, SyncError):
                    raise r
        self.health.wrote()
        self._notify()
        return results[-1]  # type: ignore[return-value]  # every SyncError was raised above

    def refuse_claim(self, claim_id: int, *, operator: str | None, now_ms: int,
                     seal: Sealer | None = None) -> claims.Claim:
        """Turn an open claim away: never merged, the rows kept for audit. With ``seal``, as one
        signed ``refuse`` delta of ours naming the claim's create, so every replica that lists the
        claim (the national hub) lists it as refused too; without, a decision of this replica only.
        Returns the claim as decided. Raises ``NotFound``, ``LocalError`` (already decided, or the
        history refuses the delta) or ``StoreUnavailable``; nothing is written then."""
        with self._lock, self.engine.begin() as conn:
            claim = self._open_claim(conn, claim_id)
            if seal is not None:
                ids = claims.open_ids(conn, claim_id)
                (written,) = self._write(conn, [(claim.kind, claim.record_id, lambda current: ("refuse", {}), ids, ())],
                                         operator=operator, now_ms=now_ms, seal=seal)
                if isinstance(written, SyncError):
                    raise written
            claims.decide(conn, [claim_id], claims.REFUSED, operator or self.owner, now_ms)
            decided = claims.get(conn, claim_id)
        if seal is not None:
            self._notify()
        assert decided is not None
        return decided

    # -- quarantine ----------------------------------------------------------------
    def quarantined(self, *, limit: int = 1000) -> list[QuarantineEntry]:
        """The latest ``limit`` quarantine entries, newest first (what was refused, why, from whom)."""
        with self.engine.connect() as conn:
            return quarantine.entries(conn, limit)

    def quarantine_body(self, entry_id: int) -> bytes:
        """The exact bytes of quarantined entry ``entry_id`` as received. Raises ``NotFound``."""
        with self.engine.connect() as conn:
            raw = quarantine.body(conn, entry_id)
        if raw is None:
            raise NotFound(f"no quarantined change {entry_id}")
        return raw

    def quarantined_by_origin(self) -> dict[str, int]:
        """Quarantine entries per claimed origin (the origin a refused change named, if readable)."""
        with self.engine.connect() as conn:
            return quarantine.by_origin(conn)

    def count_quarantined(self) -> int:
        """How many entries quarantine holds."""
        with self.engine.connect() as conn:
            return quarantine.count(conn)

    def quarantine_shares(self) -> dict[str, dict[str, int]]:
        """Per charged party: rows and bytes held in quarantine, and changes dropped over its cap."""
        with self.engine.connect() as conn:
            return quarantine.shares(conn)

    # -- equivocation (core.intakeplan) and what our hub quarantined of ours ---------
    def equivocating(self) -> dict[str, dict[str, int]]:
        """Origins seen signing two different changes with one seq: {origin: {"seq": the first
        such seq, "first_seen_ms", "seqs": how many}}. Empty for an honest federation."""
        with self.engine.connect() as conn:
            return equivocations.by_origin(conn)

    def equivocation_evidence(self, limit: int = 1000) -> list[dict[str, object]]:
        """Each equivocating (origin, seq) with its digests (hex) and the lsns of the log entries
        holding the signed bodies (the evidence)."""
        with self.engine.connect() as conn:
            return equivocations.listing(conn, limit)

    def note_upstream_quarantine(self, hub: str, seqs: Sequence[int], changes: int, reason: str,
                                 now_ms: int) -> None:
        """Record that ``hub`` acknowledged ``changes`` of our own changes (``seqs``, where it named
        them) as quarantined, the last for ``reason`` (a category, no personal data)."""
        with self._lock, self.engine.begin() as conn:
            upstream.add(conn, hub, seqs, changes, reason, now_ms)
        self.health.wrote()

    def upstream_quarantined(self) -> dict[str, object]:
        """What our hubs quarantined of our own changes (store.upstream.summary)."""
        with self.engine.connect() as conn:
            return upstream.summary(conn)

    # -- cursors -------------------------------------------------------------------
    def _set_cursor(self, conn: Connection, name: str, value: int, now_ms: int) -> None:
        done = conn.execute(update(cursors).where(cursors.c.name == name).values(value=value, updated_ms=now_ms))
        if done.rowcount == 0:
            conn.execute(insert(cursors).values(name=name, value=value, updated_ms=now_ms))

    def set_cursor(self, name: str, value: int, now_ms: int) -> None:
        """Write cursor ``name`` = ``value`` (at ``now_ms``) in a transaction of its own."""
        self.set_cursors({name: (value, now_ms)})

    def set_cursors(self, values: Mapping[str, tuple[int, int]]) -> None:
        """Write every cursor in ``values`` (name -> (value, ms)) in one transaction: all of them
        or, raising ``StoreUnavailable`` (or what the database raised), none. A later write of a
        cursor replaces it, whatever its value (cursors may move back: a subscriber resubscribing
        from an older position)."""
        with self._lock, self.engine.begin() as conn:
            for name, (value, at_ms) in values.items():
                self._set_cursor(conn, name, value, at_ms)
        self.health.wrote()

    def cursor(self, name: str) -> int:
        """The stored value of cursor ``name`` (0 if never written). Noted, unwritten acks are the
        caller's (runtime.acks.AckBook.cursor reads them first)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(cursors.c.value).where(cursors.c.name == name)).scalar() or 0)

    def cursors(self, prefix: str = "") -> dict[str, tuple[int, int]]:
        """Every stored cursor whose name starts with ``prefix``: name -> (value, ms it was written at)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(cursors).where(cursors.c.name.startswith(prefix))).all()
        return {r.name: (r.value, r.updated_ms) for r in rows}

    # -- the log ---------------------------------------------------------------------
    def last_seq(self) -> int:
        """The highest seq of our own changes (0 before the first). Committed in order under the
        write lock, so every seq up to it is visible."""
        with self.engine.connect() as conn:
            return changelog.last_seq(conn, self.owner)

    def last_lsn(self) -> int:
        """The highest lsn in the log (0 when empty); every lsn up to it is visible."""
        with self.engine.connect() as conn:
            return changelog.last_lsn(conn)

    def outbox(self, after_seq: int, limit: int = 500) -> list[LogEntry]:
        """Our own changes that must leave this node (shared ones), after ``after_seq``, in seq
        order, at most ``limit``."""
        with self.engine.connect() as conn:
            return changelog.outbox(conn, self.owner, after_seq, limit)

    def outbox_page(self, after_seq: int, limit: int = 500) -> tuple[list[LogEntry], int]:
        """``outbox`` and the seq it scanned up to (see changelog.outbox_page): past local-only
        changes too, so a caller reads on from there and never rescans them."""
        with self.engine.connect() as conn:
            return changelog.outbox_page(conn, self.owner, after_seq, limit)

    def outbox_stats(self, after_seq: int) -> tuple[int, int | None]:
        """(changes waiting, received_ms of the oldest, None if none) beyond ``after_seq``."""
        with self.engine.connect() as conn:
            return changelog.outbox_stats(conn, self.owner, after_seq)

    def read_log(self, after_lsn: int, *, flt: Filter | None = None, not_via: str | None = None,
                 limit: int = 500) -> tuple[list[LogEntry], int]:
        """Entries after ``after_lsn`` that ``flt`` admits (and not received via ``not_via``), in lsn
        order, at most ``limit``, and the lsn scanned up to (see changelog.read): it may be past the
        last entry returned, the filtered-out stretch counting as delivered. An lsn is visible only
        once every lower one is, so a reader that resumes from the returned position skips nothing."""
        with self.engine.connect() as conn:
            return changelog.read(conn, after_lsn, flt=flt, not_via=not_via, limit=limit)

    def pending(self, after_lsn: int, *, flt: Filter | None = None, not_via: str | None = None) -> tuple[int, int | None]:
        """(entries waiting, received_ms of the oldest, None if none) for a subscriber at
        ``after_lsn`` with ``flt`` / ``not_via`` as in ``read_log``."""
        with self.engine.connect() as conn:
            return changelog.pending(conn, after_lsn, flt=flt, not_via=not_via)

    def history(self, kind: str, record_id: str) -> list[LogEntry]:
        """Every log entry of record ``kind``/``record_id``, in lsn order (the order this replica
        received them)."""
        with self.engine.connect() as conn:
            return changelog.history(conn, kind, record_id)

    def last_applied(self) -> dict[str, tuple[int, int, int]]:
        """Per origin: (last seq, its write time ms, when we received it ms), from the counters
        written with each ingest."""
        with self.engine.connect() as conn:
            return counters.last_applied(conn)

    # -- keys ------------------------------------------------------------------------
    def save_key(self, key_id: str, identity: str, cert_der: bytes, now_ms: int) -> None:
        """Keep a verified signing certificate (``key_id`` of ``identity``), so it is trusted again
        after a restart. A key id already kept is left as it is."""
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(keys.c.key_id).where(keys.c.key_id == key_id)).first() is None:
                conn.execute(insert(keys).values(key_id=key_id, identity=identity, cert_der=cert_der, added_ms=now_ms))
        self.health.wrote()

    def load_keys(self) -> list[bytes]:
        """The DER bytes of every kept signing certificate, in no promised order."""
        with self.engine.connect() as conn:
            return [bytes(r[0]) for r in conn.execute(select(keys.c.cert_der))]

    # -- v2 deltas (docs/design/v2-wire.md 8.2 step 1: the executor, not yet on the wire) ------------
    def record_graph(self, kind: str, record_id: str) -> RecordGraph:
        """The v2 history of the record ``record_id`` is part of now (itself, or what a link took it
        into), as this replica holds it: held and parked deltas.

        Raises LocalError for a record with v1 history (it needs its v2 baseline first)."""
        with self.engine.connect() as conn:
            return deltas.load(conn, kind, deltas.resolve(conn, kind, record_id), graph_rules(kind))

    def receive_deltas(self, items: Sequence[ReceivedDelta], refused: Sequence[Refused] = (), *, via: str,
                       now_ms: int, cursor: tuple[str, int] | None = None,
                       acks: Mapping[str, tuple[int, int]] | None = None) -> IngestResult:
        """Decide verified deltas (``core.graph``) and carry the decisions out, in one transaction.

        Each delta is decided in the graph of the record its record is part of now (a record a
        link took in is decided with the record that took it). Held deltas (and the parked ones
        they release, under any record) are appended to the log in an order where each follows
        its dependencies, and each touched record's state (``core.graphstate``) is saved; parked
        ones are kept in ``parked``, never capped; refused ones are quarantined, charged to their
        signer, as are ``refused`` (what intake refused). Claims (creates held apart, core.graph)
        are listed (store.claims), and marked merged once an accept counts; an origin seen signing
        two deltas under one (epoch, seq) is noted (store.equivocations). ``cursor`` and ``acks``
        are written as in ``ingest``: everything commits together, or nothing does. Returns the
        counts, the ids released from parking, the conflicts opened and the records rerouted
        (``IngestResult``). Raises ``StoreUnavailable``; then nothing is written."""
        result = IngestResult()
        graphs: dict[tuple[str, str], RecordGraph] = {}
        with self._lock, self.engine.begin() as conn:
            to_log: list[tuple[Delta, Envelope, str, str]] = []  # (delta, envelope, id, via)
            to_park: list[tuple[str, Delta, Envelope, str, frozenset[str], str]] = []
            bad: list[Refused] = list(refused)
            graph_refused: list[Delta] = []  # verified, refused by the history: still answered by receipts
            incoming = {r.id: r for r in items}
            targets: dict[tuple[str, str], str] = {}  # (kind, record id) -> the record it is part of now
            for kind in sorted({r.delta.kind for r in items}):
                resolved = deltas.resolve_many(conn, kind, [r.delta.record_id for r in items if r.delta.kind == kind])
                targets.update(((kind, rid), into) for rid, into in resolved.items())
                loaded = deltas.load_many(conn, kind, sorted(set(resolved.values())), graph_rules(kind))
                graphs.update(((kind, rid), g) for rid, g in loaded.items())
            for r in items:
                key = (r.delta.kind, targets[(r.delta.kind, r.delta.record_id)])
                graph = graphs[key]
                if r.delta.merges and not set(r.delta.merges) <= graph.related:
                    deltas.extend(conn, graph, r.delta.merges)  # an alias: the history it takes in
                decision = graph.receive(r.id, r.delta, author=r.signer, now_ms=now_ms)
                if decision.outcome == DUPLICATE:
                    result.duplicates += 1
                elif decision.outcome == REFUSED:
                    graph_refused.append(r.delta)
                    # Signed, and contradicted by the history: charged to its signer, filed like intake's
                    # "<category>: <detail>" (the graph's own "unauthorised: " is not said twice).
                    why = decision.reason.removeprefix("unauthorised: ")
                    bad.append(Refused(r.envelope, f"{Unauthorised.category}: {why}", r.delta.origin, r.delta.seq,
                                       r.delta.kind, r.delta.record_id, charged=r.signer,
                                       category=Unauthorised.category))
                elif decision.outcome == PARKED:
                    to_park.append((r.id, r.delta, r.envelope, r.signer, decision.waiting_for, via))
                else:
                    to_log.append((r.delta, r.envelope, r.id, via))
                    if r.delta.at.wall_ms <= now_ms + MAX_CLOCK_LEAD_MS:
                        self._hlc = hlc.observe(self._hlc, r.delta.at, now_ms, self.owner)
                    stored = deltas.unpark(conn, [d for d in decision.released if d not in incoming])
                    for d in decision.released:
                        if d in incoming:  # parked earlier in this very call
                            to_park = [p for p in to_park if p[0] != d]
                            to_log.append((graph.held[d], incoming[d].envelope, d, via))
                        else:
                            env, came_via = stored[d]
                            to_log.append((graph.held[d], env, d, came_via))
                    result.released += list(decision.released)
            deltas.park(conn, to_park, now_ms)
            if bad:
                result.quarantined, result.dropped = quarantine.add_capped(conn, bad, peer=via, now_ms=now_ms)
                result.refused = [(r.origin, r.seq) for r in bad]
                result.last_refusal = bad[-1].category[:64]
            self._log_deltas(conn, to_log, now_ms)
            # Deltas held now may be what a delta parked under another record waits for (an alias
            # waits for the heads of the records it takes in): let those go too, transitively.
            newly = [i for _, _, i, _ in to_log]
            while newly:
                more: list[tuple[Delta, Envelope, str, str]] = []
                for kind, parked_on in deltas.waiting_on(conn, newly):
                    key = (kind, deltas.resolve(conn, kind, parked_on))
                    graph = graphs[key] = deltas.load(conn, key[0], key[1], graph_rules(key[0]))
                    released = graph.release(now_ms)
                    stored = deltas.unpark(conn, list(released))
                    more += [(graph.held[d], stored[d][0], d, stored[d][1]) for d in released]
                    result.released += list(released)
                self._log_deltas(conn, more, now_ms)
                to_log += more
                newly = [i for _, _, i, _ in more]
            result.applied, result.parked = len(to_log), len(to_park)
            if self.hold_records:  # what arrived here of what was meant for us, for receipts and gaps
                self._note_delivered(conn, [(d, HELD) for d, *_ in to_log] + [(p[1], PARKED) for p in to_park]
                                     + [(d, REFUSED) for d in graph_refused], now_ms)
            if to_log:
                self._after_held(conn, result, to_log, targets, graphs, now_ms)
            if cursor is not None:
                self._set_cursor(conn, cursor[0], cursor[1], now_ms)
            for name, (value, at_ms) in (acks or {}).items():
                self._set_cursor(conn, name, value, at_ms)
        self.health.wrote()
        result.arrived = [(d.origin, d.at.wall_ms) for d, _, _, came_via in to_log if came_via != "local"]
        if to_log:
            self._notify()
        return result

    def _note_delivered(self, conn: Connection, decided: Sequence[tuple[Delta, str]], now_ms: int) -> None:
        """Note in the inbox (store.receipts) the counters meant for us among verified deltas just
        decided here, each with its outcome: what a receipt answers and a gap is told from."""
        entries = receipts.inbox_entries(self.dest_name, decided)
        if entries:
            receipts.deliver(conn, self.dest_name, entries, now_ms)

    def _after_held(self, conn: Connection, result: IngestResult, to_log: Sequence[tuple[Delta, Envelope, str, str]],
                    targets: Mapping[tuple[str, str], str], graphs: dict[tuple[str, str], RecordGraph],
                    now_ms: int) -> None:
        """What deltas just held change beside the log: equivocation evidence, arrival counters and
        delays, and (replicas that hold records) the records, their claims and conflicts."""
        keys = sorted({(d.origin, d.seq) for d, *_ in to_log})
        twins = [Twins(o, q, frozenset(ds)) for (o, q), ds in changelog.digests(conn, keys).items() if len(ds) > 1]
        if twins:
            equivocations.note(conn, twins, now_ms)
            result.equivocations = [(t.origin, t.seq) for t in twins]
        counters.note_origins(conn, ((d.origin, d.seq, d.at.wall_ms) for d, *_ in to_log), now_ms)
        if not self.hold_records:
            return
        delays.add(conn, ((d.origin, d.at.wall_ms) for d, _, _, v in to_log if v != "local"), now_ms)
        touched = sorted({(d.kind, targets.get((d.kind, d.record_id)) or deltas.resolve(conn, d.kind, d.record_id))
                          for d, *_ in to_log})
        for key in touched:
            if key not in graphs:  # a record an alias took in: its target's graph
                graphs[key] = deltas.load(conn, key[0], key[1], graph_rules(key[0]))
        priors = records.load_many(conn, touched)
        saves: list[tuple[RecordState, RecordState | None]] = []
        decided = {(d.kind, d.record_id) for d, *_ in to_log if d.op in ("accept", "refuse")}
        for key in touched:
            graph = graphs[key]
            view = graph.view()
            if view.claims or key in decided:
                result.claims += claims.sync(conn, key[0], key[1], {c: graph.held[c] for c in view.claims},
                                             {i: e for _, e, i, _ in to_log}, now_ms, view.refused)
            if not view.counted:
                continue  # only a claim held apart: no record here yet
            try:
                state = state_of(graph)
            except ValueError:  # a surviving value not opened here yet (a relay cut short): the record
                result.withheld.append(key)  # keeps what it showed until that value arrives (Fetch)
                continue
            prior = priors[key]
            before = set(prior.conflicts()) if prior is not None else set()
            result.opened += [(key[0], key[1], f) for f in sorted(set(state.conflicts()) - before)]
            saves.append((state, prior))
            if self.province is not None and _rerouted(prior, state):
                result.rerouted.append((prior, state))
        aliases = [(d, i) for d, _, i, _ in to_log if d.merges]
        if aliases:  # the records they took in: tombstones under their own keys (see _taken_in)
            taken = records.load_many(conn, [(d.kind, m) for d, _ in aliases for m in d.merges])
            for d, i in aliases:
                graph = graphs[(d.kind, targets.get((d.kind, d.record_id)) or deltas.resolve(conn, d.kind, d.record_id))]
                saves += [(_tombstone(p, clocks(graph)[i], d.at), p) for m in d.merges
                          if (p := taken[(d.kind, m)]) is not None and not p.deleted]
        self._save(conn, saves, now_ms)

    def _log_deltas(self, conn, items: Sequence[tuple[Delta, Envelope, str, str]], now_ms: int) -> None:  # type: ignore[no-untyped-def]
        """Append (delta, envelope, id, via) to the log, grouped by via, and note the aliases among them."""
        for came_via in sorted({v for *_, v in items}):
            batch = [(d, e, i) for d, e, i, v in items if v == came_via]
            changelog.append(conn, [(d, e) for d, e, _ in batch], via=came_via, now_ms=now_ms,
                             index_routes=self.index_routes, digests=[bytes.fromhex(i) for _, _, i in batch])
        deltas.note_aliases(conn, [d for d, *_ in items], now_ms)

    def write_delta(self, kind: str, record_id: str, values: Mapping[str, object], *, op: str,
                    operator: str | None, now_ms: int, seal: Sealer, accepts: Sequence[str] = (),
                    merges: Sequence[str] = ()) -> tuple[str, Delta]:
        """One delta of ours writing ``values`` with ``op`` on the record ``record_id`` is part of
        now, through the one write path (``write_local_batch``: heads, chain, relay, owed rows);
        ``accepts`` names the claims an accept or refuse decides, ``merges`` (op "alias") the
        records it takes in. Returns (id, delta). Raises LocalError when the history would not
        hold it here (its author is not involved in the record, say); then nothing is written."""
        with self._lock, self.engine.begin() as conn:
            (result,) = self._write(conn, [(kind, record_id, lambda current: (op, dict(values)), accepts, merges)],
                                    operator=operator, now_ms=now_ms, seal=seal)
            if isinstance(result, SyncError):
                raise result
        self.health.wrote()
        self._notify()
        return result.id, result.delta

    def release_waiting(self, now_ms: int) -> IngestResult:
        """Re-decide the deltas parked until the clock caught up with their time (call now and
        then); those now held are logged and their records saved, as in ``receive_deltas``."""
        result = IngestResult()
        with self._lock, self.engine.begin() as conn:
            to_log: list[tuple[Delta, Envelope, str, str]] = []
            graphs: dict[tuple[str, str], RecordGraph] = {}
            for kind, parked_on in deltas.waiting_on_time(conn):
                record_id = deltas.resolve(conn, kind, parked_on)
                graph = graphs[(kind, record_id)] = deltas.load(conn, kind, record_id, graph_rules(kind))
                released = graph.release(now_ms)
                if not released:
                    continue
                stored = deltas.unpark(conn, list(released))
                more = [(graph.held[d], stored[d][0], d, stored[d][1]) for d in released]
                self._log_deltas(conn, more, now_ms)
                to_log += more
                result.released += list(released)
            result.applied = len(to_log)
            if to_log:
                self._note_delivered(conn, [(d, HELD) for d, *_ in to_log], now_ms)
                self._after_held(conn, result, to_log, {}, graphs, now_ms)
        if to_log:
            self._notify()
        return result

    def fetch_answer(self, kind: str, record_id: str, ids: Sequence[str], asker: str) -> list[Envelope]:
        """What this replica gives province ``asker`` that asked for the deltas ``ids`` of a record
        (``Fetch``): only if the record, as held here, involves ``asker`` now or was ever routed to
        it; then each asked delta that a newly involved province needs (``RecordGraph.relay``),
        opening only what that needs. Anything else is left out (the caller answers with what there
        is). Raises ``StoreUnavailable``."""
        with self.engine.connect() as conn:
            try:
                graph = deltas.load(conn, kind, deltas.resolve(conn, kind, record_id), graph_rules(kind))
            except (LocalError, ValidationError):
                return []
            routed = conn.execute(select(log.c.lsn).where(
                log.c.kind == kind, log.c.record_id.in_(sorted({record_id, graph.record_id})),
                log.c.routes.like(f"%,{asker},%")).limit(1)).first()
            if asker not in graph.view().involved and routed is None:
                return []
            wanted = set(ids)
            names = {did: n for did, _, n in graph.relay() if did in wanted}
            stored = changelog.envelopes(conn, kind, sorted({record_id, graph.record_id} | graph.related), sorted(names))
        return [Envelope(env.body, env.seal, graph.held[did].openings(sorted(names[did])))
                for did, env in sorted(stored.items())]

    def count_parked(self) -> tuple[int, int | None]:
        """(deltas waiting here for their history or their time, received_ms of the oldest)."""
        with self.engine.connect() as conn:
            return deltas.count(conn)

    def parked_deltas(self, *, limit: int = 1000) -> list[deltas.ParkedEntry]:
        """The deltas waiting here, oldest first, with what each waits for (no field values)."""
        with self.engine.connect() as conn:
            return deltas.listing(conn, limit)

    # -- the v2 upgrade (core.baseline; design doc, section 6) -------------------------------------
    def baseline_v2(self, *, seal: Sealer, now_ms: int, operator: str | None = None,
                    batch: int = 300) -> BaselineReport:
        """Write the v2 baseline of every record held here whose household province is this node
        and that has no delta yet: one create each, marked legacy, carrying the record as it stands
        (core.baseline). Logged like any own write (routed to the record's provinces and, for a
        cross-province record, the national hub), ``batch`` records per transaction under one seal.

        Idempotent: a record with deltas is counted as done and left alone. Records with an open
        conflict are left out and listed (settle them, then run again). Returns the counts. Raises
        LocalError on a process that is not a province node, StoreUnavailable or what ``seal``
        raises; the batches committed before stay (a re-run goes on from there)."""
        if self.province is None:
            raise LocalError(f"{self.owner} is not a province node: only a record's household province "
                             "signs its baseline")
        report = BaselineReport()
        for kind in sorted(KINDS):
            after = ""
            while True:
                with self._lock, self.engine.begin() as conn:
                    page = records.page(conn, kind, after, include_deleted=True, conflicted_only=False, limit=batch)
                    if page:
                        after = page[-1].record_id
                        self._baseline_page(conn, kind, page, report, seal=seal, operator=operator, now_ms=now_ms)
                if len(page) < batch:
                    break
        if report.written:
            self._notify()
        return report

    def _baseline_page(self, conn: Connection, kind: str, page: Sequence[RecordState], report: BaselineReport, *,
                       seal: Sealer, operator: str | None, now_ms: int) -> None:
        rules = graph_rules(kind)
        mine: list[RecordState] = []
        for state in page:
            verdict = baseline.decide(state, rules, self.province or "")
            if verdict == baseline.ELSEWHERE:
                report.elsewhere += 1
            elif verdict == baseline.CONFLICTED:
                report.conflicted.append((kind, state.record_id))
            else:
                mine.append(state)
        graphs = deltas.load_many(conn, kind, [st.record_id for st in mine], rules)
        linked = deltas.resolve_many(conn, kind, [st.record_id for st in mine])
        written: list[tuple[Delta, bytes, str, RecordGraph, RecordState]] = []
        seq = changelog.last_seq(conn, self.owner)
        for state in mine:
            graph = graphs[state.record_id]
            if graph.held or linked[state.record_id] != state.record_id:
                report.already += 1  # it has v2 history (its baseline, or deltas since)
                continue
            seq += 1
            self._hlc = at = hlc.tick(self._hlc, now_ms, self.owner)
            did, delta, body = baseline.write(graph, state, origin=self.owner, seq=seq, at=at, operator=operator,
                                              salt=_salt)
            written.append((delta, body, did, graph, state))
        if not written:
            return
        seals = seal([body for _, body, *_ in written])
        self._log_deltas(conn, [(d, Envelope(body, sealed, d.openings()), did, "local")
                                for (d, body, did, _, _), sealed in zip(written, seals)], now_ms)
        if self.hold_records:
            self._save(conn, [(state_of(graph), state) for _, _, _, graph, state in written], now_ms)
        report.written += len(written)

    # -- receipts (issue 17; store.receipts: the lead's v2 wire calls these) ------------------------
    # The author is this store's owner; as a destination it is named by its identity's name ("44",
    # "national"), as receipts and ``chain`` name destinations. Methods without a ``conn`` run in a
    # transaction of their own; the write path calls ``store.receipts.assign`` / ``owe`` in the
    # transaction that logs the delta, and intake ``store.receipts.deliver`` in the ingest's.
    @property
    def dest_name(self) -> str:
        """How receipts and ``chain`` name this replica as a destination."""
        return Identity.parse(self.owner).name

    def assign_counters(self, destinations: Sequence[str], *, epoch: int = 0) -> dict[str, int]:
        """Take the next per-destination counter of our own stream ``epoch`` for each destination
        (one delta's ``chain``); each counter is handed out once, across restarts."""
        with self._lock, self.engine.begin() as conn:
            chain = receipts.assign(conn, self.owner, epoch, destinations)
        self.health.wrote()
        return chain

    def note_owed(self, chain: Mapping[str, int], *, delta_id: str, seq: int, now_ms: int, via: str = "",
                  epoch: int = 0) -> None:
        """Keep each counter of ``chain`` (our delta ``delta_id``, seq ``seq``) owed to its destination
        from ``now_ms`` until that destination's receipt covers it."""
        with self._lock, self.engine.begin() as conn:
            receipts.owe(conn, self.owner, epoch, chain, delta_id=delta_id, seq=seq, now_ms=now_ms, via=via)
        self.health.wrote()

    def note_custody(self, hub: str, first_seq: int, last_seq: int) -> int:
        """Hub ``hub`` acknowledged (took custody of) our seqs ``first_seq..last_seq``: what is still
        owed of them names that hub from now on. Returns how many owed counters it touched."""
        with self._lock, self.engine.begin() as conn:
            done = receipts.custody(conn, self.owner, hub, first_seq, last_seq)
        self.health.wrote()
        return done

    def take_receipt(self, receipt: Receipt, *, at_ms: int, now_ms: int) -> int:
        """Merge a *verified* destination receipt (signed at ``at_ms``) into what that destination
        said before, and settle every owed counter it newly covers. Returns how many it settled.
        Receipts about other origins are kept too (they show the destination answering)."""
        with self._lock, self.engine.begin() as conn:
            settled = receipts.take(conn, receipt, at_ms=at_ms, now_ms=now_ms)
        self.health.wrote()
        return settled

    def oldest_owed(self) -> dict[str, receipts.Oldest]:
        """Per destination with anything owed: its oldest unreceipted counter (by first send), the
        delta it numbers, when it was first sent, the hub that had custody, and how many are owed."""
        with self.engine.connect() as conn:
            return receipts.oldest(conn)

    def owed_to(self, dest: str, *, limit: int = 1000) -> list[receipts.OwedEntry]:
        """What ``dest`` is still owed, lowest counter first, at most ``limit``."""
        with self.engine.connect() as conn:
            return receipts.owed_entries(conn, dest, limit)

    def owed_due(self, *, now_ms: int, alert_ms: int, alive: Mapping[str, bool], limit: int = 500) -> list[receipts.OwedEntry]:
        """What to re-send now (``core.receipts.Ledger.due``'s rule), each stamped re-sent at ``now_ms``."""
        with self._lock, self.engine.begin() as conn:
            out = receipts.due(conn, now_ms=now_ms, alert_ms=alert_ms, alive=alive, limit=limit)
        if out:  # only a write that wrote says the store is usable (a read-only commit passes a lock)
            self.health.wrote()
        return out

    def receipts_heard(self) -> dict[str, tuple[int, int]]:
        """Per destination: (when its signed receipt time last moved, when what it covers last grew)."""
        with self.engine.connect() as conn:
            return receipts.heard(conn)

    def note_delivered(self, origin: str, epoch: int, n: int, outcome: str, *, now_ms: int) -> None:
        """Counter ``n`` of ``origin``'s stream ``epoch`` arrived here: held, parked or refused.
        Raises ValueError (nothing noted) for another outcome or a counter below 1."""
        self.note_delivered_many([(origin, epoch, n, outcome)], now_ms=now_ms)

    def note_delivered_many(self, entries: Sequence[tuple[str, int, int, str]], *, now_ms: int) -> None:
        """``note_delivered`` for many (origin, epoch, counter, outcome), in one transaction."""
        with self._lock, self.engine.begin() as conn:
            receipts.deliver(conn, self.dest_name, entries, now_ms)
        self.health.wrote()

    def receipt_for(self, origin: str, epoch: int = 0) -> Receipt:
        """The cumulative receipt this replica gives ``origin``'s stream ``epoch``, to sign and send."""
        with self.engine.connect() as conn:
            return receipts.receipt(conn, self.dest_name, origin, epoch)

    def receipt_streams(self) -> dict[tuple[str, int], int]:
        """Every (origin, epoch) something arrived on, and when what we hold of it last changed."""
        with self.engine.connect() as conn:
            return receipts.streams(conn)

    def gaps(self) -> dict[str, dict[int, tuple[tuple[int, int], ...]]]:
        """Per origin and epoch: counters missing below the highest one that arrived here (dropped,
        or still on the way). Empty when nothing is missing."""
        with self.engine.connect() as conn:
            return receipts.gaps(conn, self.dest_name)


def _taken_in(written: Sequence[tuple], priors: Mapping[tuple[str, str], RecordState | None]
              ) -> list[tuple[RecordState, RecordState | None]]:
    """The records an alias among ``written`` (id, delta, body, graph, relayed) took in, saved as
    tombstones under their own keys: their versions live on in the record that took them in, and
    reads of the old key resolve there (``Store.get``)."""
    out: list[tuple[RecordState, RecordState | None]] = []
    for did, delta, _, graph, _ in written:
        for m in delta.merges:
            prior = priors.get((delta.kind, m))
            if prior is not None and not prior.deleted:
                out.append((_tombstone(prior, clocks(graph)[did], delta.at), prior))
    return out


def _tombstone(prior: RecordState, clock: VectorClock, at: hlc.Timestamp) -> RecordState:
    return RecordState(prior.kind, prior.record_id, {DELETED: (RecordVersion(True, clock, at),)})


def _shown(graph: RecordGraph) -> RecordState | None:
    """The record as a local edit sees it: None while nothing of it counts here (new, or only a
    claim held apart). Raises LocalError while a surviving value has not arrived here."""
    if not graph.view().counted:
        return None
    try:
        return state_of(graph)
    except ValueError as err:
        raise LocalError(f"{err}; it is fetched from the hub, try again shortly") from None


@dataclass(frozen=True, slots=True)
class Written:
    """One delta of ours as written: its id, the delta, and the record it leaves here."""

    id: str
    delta: Delta
    state: RecordState

    @property
    def op(self) -> str:
        return self.delta.op

    @property
    def seq(self) -> int:
        return self.delta.seq

    @property
    def kind(self) -> str:
        return self.delta.kind

    @property
    def record_id(self) -> str:
        return self.delta.record_id

    @property
    def origin(self) -> str:
        return self.delta.origin

    @property
    def routes(self) -> frozenset[str]:
        return self.delta.routes


def _salt() -> bytes:
    """A field commitment's salt: random, so a body seen without its openings reveals nothing."""
    return os.urandom(SALT_BYTES)


@dataclass(frozen=True, slots=True)
class ReceivedDelta:
    """A v2 delta that passed intake: its id (SHA-256 hex of the body), parsed, sealed, and who signed it."""

    id: str
    delta: Delta
    envelope: Envelope
    signer: str
    relayed: bool = False  # came in another delta's relay bundle (core.relay), not on its own


@dataclass(slots=True)
class BaselineReport:
    """What ``Store.baseline_v2`` did (record ids only: no personal data)."""

    written: int = 0  # baselines signed and logged now
    already: int = 0  # records of this province with v2 history already (a re-run)
    elsewhere: int = 0  # records whose household is another province: that node signs theirs
    conflicted: list[tuple[str, str]] = field(default_factory=list)  # (kind, id) left until settled


def _rerouted(prior: RecordState | None, state: RecordState) -> bool:
    """Whether ``state`` shows other routing values than ``prior`` (any, for a record new here)."""
    fields = get_kind(state.kind).routing_fields
    if prior is None:
        return bool(fields)
    for name in fields:
        before, after = prior.winner(name), state.winner(name)
        if (before.value if before else None) != (after.value if after else None):
            return True
    return False
