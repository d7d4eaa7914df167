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
Errors are returned as exceptions from core.errors; nothing here logs. An outage
of the database itself (server down or restarting, file locked, disk full) is
raised as ``core.errors.StoreUnavailable`` and noted in ``Store.health``
(store.health); no SQLAlchemy exception type leaves the store for one.
"""


from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

from sqlalchemy import Engine, insert, select, update

from core import hlc
from core.apply import apply, local_write
from core.change import Change, Envelope, Head
from core.errors import Equivocation, LocalError, NotFound, SyncError
from core.identity import Identity
from core.kinds import get_kind
from core.merkle import Seal
from core.record import RecordState
from core.routing import Filter
from core.claims import is_claim, settled_by
from store import changelog, claims, counters, delays, duplicates, projections, quarantine, records, rekey, tallies
from store.changelog import LogEntry
from store.db import migrate, open_engine
from store.health import Health, watch
from store.quarantine import QuarantineEntry
from store.schema import cursors, keys, meta

__all__ = ["Accepted", "IngestResult", "LogEntry", "QuarantineEntry", "Refused", "Store"]

MAX_CLOCK_LEAD_MS = 24 * 3600 * 1000
ACK_FLUSH_S = 0.25
Sealer = Callable[[Sequence[bytes]], list[Seal]]
Edit = Callable[[RecordState | None], tuple[str, Mapping[str, object]]]


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
    charged: str | None = None  # whose quarantine share it takes (store.quarantine); None: the peer it came via
    count: int = 1  # changes it stands for (a batch refused whole is one entry for all of them)


@dataclass(slots=True)
class IngestResult:
    applied: int = 0
    duplicates: int = 0
    quarantined: int = 0
    dropped: int = 0  # of the quarantined: over their party's cap, counted and not kept
    opened: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, id, field)
    claims: int = 0  # held apart as claims (core.claims), not merged
    # (prior, merged) of the records whose shown routing fields this ingest changed (prior None: new
    # here); kept by province stores only, for the followers' repair (node.refollow)
    rerouted: list[tuple[RecordState | None, RecordState]] = field(default_factory=list)


class Store:
    """One replica's database. ``owner`` is the identity of the process that owns it.

    This class decides transactions, the write lock and notifications; what is
    stored lives in store.records, store.changelog, store.quarantine and
    store.counters.
    """

    def __init__(self, engine: Engine, *, owner: str, index_routes: bool = False, hold_records: bool = True,
                 health: Health | None = None, ack_flush_s: float = ACK_FLUSH_S):
        self.engine = engine
        self.health = health or Health()
        if not getattr(engine, "_yipanqi_watched", False):
            watch(engine, self.health)
            engine._yipanqi_watched = True  # type: ignore[attr-defined]
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
        self._ack_flush_s = ack_flush_s  # [timing].ack_flush_s
        self._closed = threading.Event()
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
             upgraded: Callable[[str], None] | None = None, ack_flush_s: float = ACK_FLUSH_S) -> "Store":
        """Open (and migrate) the store at ``url``. Raises ``StoreUnavailable`` when the database
        cannot be used (a PostgreSQL server not up yet, say). With ``person_secret``, a store
        still marked for the person-key re-key is re-keyed (store.rekey) and ``upgraded`` is told
        what was done (no personal data)."""
        engine = open_engine(url)
        health = health or Health()
        watch(engine, health)
        engine._yipanqi_watched = True  # type: ignore[attr-defined]
        migrate(engine)
        if person_secret is not None:
            with engine.begin() as conn:
                if rekey.pending(conn):
                    report = rekey.run(conn, person_secret)
                    if upgraded is not None:
                        upgraded(f"store upgrade (person keys): {report}")
        return cls(engine, owner=owner, index_routes=index_routes, hold_records=hold_records, health=health,
                   ack_flush_s=ack_flush_s)

    def probe(self) -> None:
        """One small write transaction: returns once the database takes writes again, raises
        ``StoreUnavailable`` while it does not (what a paused sync waits on)."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "owner").values(value=self.owner))
        self.health.wrote()

    def close(self) -> None:
        self._closed.set()
        try:
            self.flush_acks()
        finally:
            self.engine.dispose()

    # -- records -------------------------------------------------------------
    def get(self, kind: str, record_id: str) -> RecordState | None:
        with self.engine.connect() as conn:
            return records.load(conn, kind, record_id)

    def require(self, kind: str, record_id: str) -> RecordState:
        state = self.get(kind, record_id)
        if state is None:
            raise NotFound(f"no {kind} record {record_id} on {self.owner}")
        return state

    def iter_records(self, kind: str, *, include_deleted: bool = False, conflicted_only: bool = False,
                     page: int = 500, after: str = "") -> Iterator[RecordState]:
        """All records of a kind in id order (those whose id sorts after ``after``), read page by
        page (memory stays flat)."""
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
        """(household, residence, move month, live records) groups, from the projection columns."""
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
        """Live records (or live records with open conflicts), from the counters."""
        name = counters.CONFLICTED if conflicted_only else counters.LIVE
        with self.engine.connect() as conn:
            return counters.read(conn, name).get(name, (0, 0))[0]

    def _save(self, conn, states: Sequence[tuple[RecordState, RecordState | None]], now_ms: int) -> None:  # type: ignore[no-untyped-def]
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

    def _log_own(self, conn, changes: Sequence[Change], saves: Sequence[tuple[RecordState, RecordState | None]],  # type: ignore[no-untyped-def]
                 now_ms: int, seal: Sealer) -> None:
        """Our own changes into the log under one batch signature, and the states they make saved,
        in the caller's transaction."""
        bodies = [c.to_body() for c in changes]
        seals = seal(bodies)
        changelog.append(conn, [(c, Envelope(b, s)) for c, b, s in zip(changes, bodies, seals)],
                         via="local", now_ms=now_ms, index_routes=self.index_routes)
        self._save(conn, saves, now_ms)

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
            seq = changelog.last_seq(conn, self.owner)
            loaded = records.load_many(conn, [(kind, record_id) for kind, record_id, _ in items])
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
                change = self._own_change(current, kind=kind, record_id=record_id, values=values, seq=seq, op=op,
                                          operator=operator, now_ms=now_ms)
                latest[key] = change.state
                changes.append(change)
                results.append(change)
            if changes:
                self._log_own(conn, changes, [(st, loaded[k]) for k, st in latest.items()], now_ms, seal)
            acks = self._write_acks(conn)
        self._acks_written(acks)
        if changes:
            self._notify()
        return results

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
            bad = list(refused)
            seen = changelog.digests(conn, [(a.change.origin, a.change.seq) for a in accepted])
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
                        # Same "<category>: <detail>" form as runtime.intake.reason gives every other refusal;
                        # verified, so charged to its signer (the origin: intake checked they are one).
                        bad.append(Refused(a.envelope, f"equivocation: {err}", ch.origin, ch.seq, ch.kind,
                                           ch.record_id, charged=ch.origin))
                    continue
                seen[(ch.origin, ch.seq)] = digest  # a duplicate inside the batch
                fresh.append(a)
                if ch.at.wall_ms <= now_ms + MAX_CLOCK_LEAD_MS:
                    # A peer's clock far ahead (broken, or hostile) must not drag ours along:
                    # its change still merges; only our own timestamps ignore it.
                    self._hlc = hlc.observe(self._hlc, ch.at, now_ms, self.owner)
            if bad:
                result.quarantined, result.dropped = quarantine.add_capped(conn, bad, peer=via, now_ms=now_ms)
            changelog.append(conn, [(a.change, a.envelope) for a in fresh], via=via, now_ms=now_ms,
                             index_routes=self.index_routes,
                             digests=[seen[(a.change.origin, a.change.seq)] for a in fresh])
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
                    if is_claim(states[key], ch, open_claim=ch.origin in held.get(key, ())):  # type: ignore[arg-type]
                        new_claims.append((ch, a.envelope.body))  # type: ignore[arg-type]
                        held.setdefault(key, set()).add(ch.origin)
                        continue
                    outcome = apply(states[key], ch)
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
            acks = self._write_acks(conn)
        self._acks_written(acks)
        self.arrivals.extend((a.change.origin, a.change.at.wall_ms, now_ms) for a in fresh)
        if result.applied:
            self._notify()
        return result


    # -- claims (core.claims) -------------------------------------------------------
    def list_claims(self, *, status: str | None = None) -> list[claims.Claim]:
        with self.engine.connect() as conn:
            return claims.listing(conn, status=status)

    def _open_claim(self, conn, claim_id: int) -> claims.Claim:  # type: ignore[no-untyped-def]
        claim = claims.get(conn, claim_id)
        if claim is None:
            raise NotFound(f"no claim {claim_id} on {self.owner}")
        if claim.status != claims.OPEN:
            raise LocalError(f"claim {claim_id} is already {claim.status}")
        return claim

    def accept_claim(self, claim_id: int, *, operator: str | None, now_ms: int, seal: Sealer) -> Change:
        """Merge an open claim (with the claimer's later held changes) into the record, as one
        signed local change of ours: from it on the record involves the claimer and reaches it."""
        with self._lock, self.engine.begin() as conn:
            claim = self._open_claim(conn, claim_id)
            key = (claim.kind, claim.record_id)
            current = records.load_many(conn, [key])[key]
            if current is None:
                raise NotFound(f"no {claim.kind} record {claim.record_id} on {self.owner}")
            rows = claims.open_changes(conn, claim.kind, claim.record_id, claim.origin)
            merged = current
            for _, ch in rows:
                merged = apply(merged, ch).state
            change = self._own_change(merged, kind=claim.kind, record_id=claim.record_id, values={},
                                      seq=changelog.last_seq(conn, self.owner) + 1,
                                      op="delete" if merged.deleted else "update", operator=operator, now_ms=now_ms)
            self._log_own(conn, [change], [(change.state, current)], now_ms, seal)
            claims.decide(conn, [cid for cid, _ in rows], claims.ACCEPTED, operator or self.owner, now_ms)
            acks = self._write_acks(conn)
        self._acks_written(acks)
        self._notify()
        return change

    def link_local(self, kind: str, from_id: str, into: str, *, check: Callable[[RecordState, RecordState | None], None],
                   operator: str | None, now_ms: int, seal: Sealer,
                   values: Callable[[RecordState], Mapping[str, object]] = lambda merged: {}
                   ) -> tuple[Change, Change]:
        """``person link``: one transaction, two signed changes of ours. Record ``into`` gains every
        version of ``from_id`` (merged as any replica merges: nothing is lost, concurrent values stay
        as conflicts) and the fields ``values(merged)`` gives; ``from_id`` is deleted (a tombstone
        keeps its fields). ``check(source, target)`` refuses a link this node may not make before
        anything is written."""
        with self._lock, self.engine.begin() as conn:
            loaded = records.load_many(conn, [(kind, from_id), (kind, into)])
            source, target = loaded[(kind, from_id)], loaded[(kind, into)]
            if source is None:
                raise NotFound(f"no {kind} record {from_id} on {self.owner}")
            check(source, target)
            rekeyed = RecordState(kind, into, source.fields)
            base = rekeyed if target is None else target.merge(rekeyed)
            seq = changelog.last_seq(conn, self.owner)
            merged = self._own_change(base, kind=kind, record_id=into, values=values(base), seq=seq + 1, op="update",
                                      operator=operator, now_ms=now_ms)
            gone = self._own_change(source, kind=kind, record_id=from_id, values={}, seq=seq + 2, op="delete",
                                    operator=operator, now_ms=now_ms)
            self._log_own(conn, [merged, gone], [(merged.state, target), (gone.state, source)], now_ms, seal)
            acks = self._write_acks(conn)
        self._acks_written(acks)
        self._notify()
        return merged, gone

    def refuse_claim(self, claim_id: int, *, operator: str | None, now_ms: int) -> claims.Claim:
        """Drop an open claim (and the claimer's changes held with it); the rows stay for audit."""
        with self._lock, self.engine.begin() as conn:
            claim = self._open_claim(conn, claim_id)
            rows = claims.open_changes(conn, claim.kind, claim.record_id, claim.origin)
            claims.decide(conn, [cid for cid, _ in rows], claims.REFUSED, operator or self.owner, now_ms)
            decided = claims.get(conn, claim_id)
        assert decided is not None
        return decided

    # -- quarantine ----------------------------------------------------------------
    def quarantined(self, *, limit: int = 1000) -> list[QuarantineEntry]:
        with self.engine.connect() as conn:
            return quarantine.entries(conn, limit)

    def quarantine_body(self, entry_id: int) -> bytes:
        with self.engine.connect() as conn:
            raw = quarantine.body(conn, entry_id)
        if raw is None:
            raise NotFound(f"no quarantined change {entry_id}")
        return raw

    def quarantined_by_origin(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return quarantine.by_origin(conn)

    def count_quarantined(self) -> int:
        with self.engine.connect() as conn:
            return quarantine.count(conn)

    def quarantine_shares(self) -> dict[str, dict[str, int]]:
        """Per charged party: rows and bytes held in quarantine, and changes dropped over its cap."""
        with self.engine.connect() as conn:
            return quarantine.shares(conn)

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
        self.health.wrote()

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
            acks = self._write_acks(conn)
        self._acks_written(acks)

    def _write_acks(self, conn) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
        """Write the noted acks in the caller's transaction; they stay noted until it commits."""
        with self._acks_lock:
            pending = dict(self._acks)
        for name, (value, at_ms) in pending.items():
            self._set_cursor(conn, name, value, at_ms)
        return pending

    def _acks_written(self, written: dict[str, tuple[int, int]]) -> None:
        """After the commit: forget the acks written, unless a newer one came meanwhile."""
        self.health.wrote()
        with self._acks_lock:
            for name, ack in written.items():
                if self._acks.get(name) == ack:
                    del self._acks[name]

    def _flush_acks_loop(self) -> None:
        while not self._closed.wait(self._ack_flush_s):
            try:
                self.flush_acks()
            except Exception:  # noqa: BLE001 - an outage is noted in self.health; the acks wait for the next try
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
            return changelog.last_seq(conn, self.owner)

    def last_lsn(self) -> int:
        with self.engine.connect() as conn:
            return changelog.last_lsn(conn)

    def outbox(self, after_seq: int, limit: int = 500) -> list[LogEntry]:
        """Our own changes that must leave this node, after the acknowledged sequence."""
        with self.engine.connect() as conn:
            return changelog.outbox(conn, self.owner, after_seq, limit)

    def outbox_page(self, after_seq: int, limit: int = 500) -> tuple[list[LogEntry], int]:
        """``outbox`` and the seq it scanned up to (see changelog.outbox_page)."""
        with self.engine.connect() as conn:
            return changelog.outbox_page(conn, self.owner, after_seq, limit)

    def outbox_stats(self, after_seq: int) -> tuple[int, int | None]:
        """(changes waiting, received_ms of the oldest) beyond ``after_seq``."""
        with self.engine.connect() as conn:
            return changelog.outbox_stats(conn, self.owner, after_seq)

    def read_log(self, after_lsn: int, *, flt: Filter | None = None, not_via: str | None = None,
                 limit: int = 500) -> tuple[list[LogEntry], int]:
        """Entries after ``after_lsn`` that ``flt`` admits, and the lsn scanned up to (see changelog.read)."""
        with self.engine.connect() as conn:
            return changelog.read(conn, after_lsn, flt=flt, not_via=not_via, limit=limit)

    def pending(self, after_lsn: int, *, flt: Filter | None = None, not_via: str | None = None) -> tuple[int, int | None]:
        """(entries waiting, received_ms of the oldest) for a subscriber at ``after_lsn``."""
        with self.engine.connect() as conn:
            return changelog.pending(conn, after_lsn, flt=flt, not_via=not_via)

    def recent_arrivals(self, last: int) -> list[tuple[str, int, int]]:
        """(origin, written at ms, applied ms) of the last ``last`` changes received since this process started."""
        return list(self.arrivals)[-last:]

    def history(self, kind: str, record_id: str) -> list[LogEntry]:
        with self.engine.connect() as conn:
            return changelog.history(conn, kind, record_id)

    def last_applied(self) -> dict[str, tuple[int, int, int]]:
        """Per origin: (last seq, its write time ms, when we received it ms)."""
        with self.engine.connect() as conn:
            return counters.last_applied(conn)

    # -- keys ------------------------------------------------------------------------
    def save_key(self, key_id: str, identity: str, cert_der: bytes, now_ms: int) -> None:
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(keys.c.key_id).where(keys.c.key_id == key_id)).first() is None:
                conn.execute(insert(keys).values(key_id=key_id, identity=identity, cert_der=cert_der, added_ms=now_ms))
        self.health.wrote()

    def load_keys(self) -> list[bytes]:
        with self.engine.connect() as conn:
            return [bytes(r[0]) for r in conn.execute(select(keys.c.cert_der))]


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
