"""Issue 17's receipts in the database: what an author owes, and what a destination holds.

How this works (docs/design/v2-wire.md, sections 4 and 8.2 step 3). ``core.receipts`` decides;
this module loads and saves its objects, inside the caller's transaction:

* the author's side. ``assign`` hands out the next per-destination counters of a delta (the
  delta's signed ``chain``) from ``chains``; ``owe`` keeps each (destination, counter) in
  ``owed`` with the delta it numbers, until ``take`` merges that destination's verified receipt
  (``Receipt.merge``) into ``receipts_in`` and drops every owed counter the merge covers.
  ``custody`` notes which hub took custody (what an alert names); ``oldest`` and ``due`` are what
  status and the re-send rule (``Ledger.due``) read;
* the destination's side. ``deliver`` notes each counter that arrived with its outcome (held,
  parked, refused) in ``inbox``, one row per (origin, epoch) read and written whole through
  ``core.receipts.Inbox``; ``receipt`` is the cumulative receipt to sign, ``gaps`` the counters
  missing below the highest seen.

Counters are assigned in the transaction that logs the delta they number, so a counter is never
handed out for a delta that was not written (which would be a gap no one can fill). Nothing here
logs or signs; the runtime (runtime.receipts) verifies receipts before they reach ``take``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from core.delta import Delta
from core.receipts import HELD, PARKED, REFUSED, Inbox, Ledger, Owed, Range, Receipt, without
from store.schema import chains, inbox, owed, receipts_in


def _text(ranges: Iterable[Range]) -> str:
    return json.dumps([[lo, hi] for lo, hi in ranges], separators=(",", ":"))


def _ranges(text: str) -> tuple[Range, ...]:
    return tuple((int(lo), int(hi)) for lo, hi in json.loads(text))


@dataclass(frozen=True, slots=True)
class OwedEntry:
    """One counter still owed to ``dest``: the delta it numbers, who had custody, when it went."""

    dest: str
    origin: str
    epoch: int
    n: int
    delta_id: str
    seq: int
    first_ms: int  # first sent: the age status shows
    sent_ms: int  # last (re)sent: the re-send clock
    via: str  # the hub that took custody ("" before any hub acknowledged it)
    resent: int


@dataclass(frozen=True, slots=True)
class Oldest:
    """Per destination: its oldest owed counter (by first send) and how many are owed in all."""

    dest: str
    origin: str
    epoch: int
    n: int
    delta_id: str
    seq: int  # the delta's seq (what the author's log and its hub's acks number)
    first_ms: int
    via: str
    owed: int


def _entry(row) -> OwedEntry:  # type: ignore[no-untyped-def]
    return OwedEntry(row.dest, row.origin, int(row.epoch), int(row.n), row.delta_id, int(row.seq),
                     int(row.first_ms), int(row.sent_ms), row.via, int(row.resent))


# -- the author's side -----------------------------------------------------------------------------

def assign(conn: Connection, origin: str, epoch: int, destinations: Iterable[str]) -> dict[str, int]:
    """The next counter per destination for one delta of ``origin`` (``chain``), now taken."""
    chain: dict[str, int] = {}
    for d in sorted(set(destinations)):
        last = conn.execute(select(chains.c.last).where(and_(chains.c.origin == origin, chains.c.epoch == epoch,
                                                              chains.c.dest == d))).scalar()
        if last is None:
            conn.execute(insert(chains).values(origin=origin, epoch=epoch, dest=d, last=1))
        else:
            conn.execute(update(chains).where(and_(chains.c.origin == origin, chains.c.epoch == epoch,
                                                   chains.c.dest == d)).values(last=last + 1))
        chain[d] = 1 if last is None else int(last) + 1
    return chain


def last_counters(conn: Connection, origin: str, epoch: int, destinations: Iterable[str]) -> dict[str, int]:
    """The last counter taken per destination (0 for none yet), to hand out the next ones in a batch."""
    dests = sorted(set(destinations))
    out = dict.fromkeys(dests, 0)
    if dests:
        q = select(chains.c.dest, chains.c.last).where(and_(chains.c.origin == origin, chains.c.epoch == epoch,
                                                             chains.c.dest.in_(dests)))
        out.update((d, int(last)) for d, last in conn.execute(q))
    return out


def take_counters(conn: Connection, origin: str, epoch: int, taken: Mapping[str, int], before: Mapping[str, int]) -> None:
    """Store the last counters a batch took (``taken``), where they stood at ``before`` (0: no row yet)."""
    for d, last in sorted(taken.items()):
        if before.get(d, 0) == 0:
            conn.execute(insert(chains).values(origin=origin, epoch=epoch, dest=d, last=last))
        else:
            conn.execute(update(chains).where(and_(chains.c.origin == origin, chains.c.epoch == epoch,
                                                   chains.c.dest == d)).values(last=last))


def owe(conn: Connection, origin: str, epoch: int, chain: Mapping[str, int], *, delta_id: str, seq: int,
        now_ms: int, via: str = "") -> None:
    """Keep each (destination, counter) of ``chain`` owed from ``now_ms``: inserts only, as this runs
    in the write path. (A counter a destination signed for ahead of time is settled by its next
    receipt: ``take`` settles everything a receipt covers, not only what it newly covers.)"""
    if chain:
        conn.execute(insert(owed), [{"dest": d, "origin": origin, "epoch": epoch, "n": n, "delta_id": delta_id,
                                     "seq": seq, "first_ms": now_ms, "sent_ms": now_ms, "via": via, "resent": 0}
                                    for d, n in sorted(chain.items())])


def owe_many(conn: Connection, origin: str, epoch: int, deltas: Sequence[tuple[Mapping[str, int], str, int]], *,
             now_ms: int) -> None:
    """``owe`` for many deltas, each (chain, delta id, seq), in one statement (a write batch's)."""
    rows = [{"dest": d, "origin": origin, "epoch": epoch, "n": n, "delta_id": did, "seq": seq, "first_ms": now_ms,
             "sent_ms": now_ms, "via": "", "resent": 0}
            for chain, did, seq in deltas for d, n in sorted(chain.items())]
    if rows:
        conn.execute(insert(owed), rows)


def custody(conn: Connection, origin: str, hub: str, first_seq: int, last_seq: int) -> int:
    """Hub ``hub`` took custody of ``origin``'s seqs ``first_seq..last_seq``: owed counters of those
    deltas now name it (the latest hub to take custody is the one on the path). Returns rows noted."""
    done = conn.execute(update(owed).where(and_(owed.c.origin == origin, owed.c.seq >= first_seq,
                                                owed.c.seq <= last_seq)).values(via=hub))
    return int(done.rowcount or 0)


def take(conn: Connection, receipt: Receipt, *, at_ms: int, now_ms: int) -> int:
    """Merge a verified ``receipt`` (signed at ``at_ms``) into what its destination said before, and
    drop every owed counter the merge covers. Returns how many owed counters it settled. A stale
    or repeated receipt takes nothing back (receipts merge by union); it settles only what was
    owed again since (a counter the destination had signed for ahead of time)."""
    key = and_(receipts_in.c.dest == receipt.dest, receipts_in.c.origin == receipt.origin,
               receipts_in.c.epoch == receipt.epoch)
    row = conn.execute(select(receipts_in).where(key)).first()
    before = None if row is None else Receipt(receipt.dest, receipt.origin, receipt.epoch, _ranges(row.held),
                                              _ranges(row.parked), _ranges(row.refused))
    merged = before.merge(receipt) if before is not None else receipt
    new = without(merged.covered, before.covered if before is not None else ())
    values = {"held": _text(merged.held), "parked": _text(merged.parked), "refused": _text(merged.refused)}
    if row is None:
        conn.execute(insert(receipts_in).values(dest=receipt.dest, origin=receipt.origin, epoch=receipt.epoch,
                                                at_ms=at_ms, heard_ms=now_ms, progress_ms=now_ms, **values))
    else:
        moved = at_ms > row.at_ms
        conn.execute(update(receipts_in).where(key).values(
            at_ms=max(at_ms, row.at_ms), heard_ms=now_ms if moved else row.heard_ms,
            progress_ms=now_ms if new else row.progress_ms, **values))
    settled = 0
    covered = merged.covered
    for i in range(0, len(covered), 200):  # one statement per 200 ranges (a receipt has at most 768)
        spans = [and_(owed.c.n >= lo, owed.c.n <= hi) for lo, hi in covered[i:i + 200]]
        done = conn.execute(delete(owed).where(and_(owed.c.dest == receipt.dest, owed.c.origin == receipt.origin,
                                                    owed.c.epoch == receipt.epoch, or_(*spans))))
        settled += int(done.rowcount or 0)
    return settled


def oldest(conn: Connection) -> dict[str, Oldest]:
    """Per destination with anything owed: its oldest owed counter by first send (ties: the lowest
    counter), and how many it is owed. One grouped query, then one probe per destination."""
    out: dict[str, Oldest] = {}
    groups = conn.execute(select(owed.c.dest, func.min(owed.c.first_ms), func.count())
                          .group_by(owed.c.dest).order_by(owed.c.dest)).all()
    for dest, first_ms, count in groups:
        row = conn.execute(select(owed).where(and_(owed.c.dest == dest, owed.c.first_ms == first_ms))
                           .order_by(owed.c.epoch, owed.c.n).limit(1)).first()
        if row is None:  # settled between the two reads (a receipt arrived; PostgreSQL reads per statement)
            continue
        out[dest] = Oldest(dest, row.origin, int(row.epoch), int(row.n), row.delta_id, int(row.seq),
                           int(row.first_ms), row.via, int(count))
    return out


def due(conn: Connection, *, now_ms: int, alert_ms: int, alive: Mapping[str, bool],
        limit: int = 500) -> list[OwedEntry]:
    """What to re-send now, by ``core.receipts.Ledger.due``'s rule (owed past ``alert_ms`` since its
    last send, to a destination ``alive`` says is answering), oldest first, at most ``limit``; each
    is stamped as re-sent now. Only counters past the delay are read, however many are owed."""
    answering = sorted(d for d, up in alive.items() if up)
    if not answering:
        return []
    # Only answering destinations are read: a destination that is down, owed many, must not use up
    # ``limit`` and starve the others.
    rows = conn.execute(select(owed).where(and_(owed.c.sent_ms <= now_ms - alert_ms, owed.c.dest.in_(answering)))
                        .order_by(owed.c.sent_ms, owed.c.dest, owed.c.n).limit(limit)).all()
    entries = {(e.dest, e.origin, e.epoch, e.n): e for e in map(_entry, rows)}
    out: list[OwedEntry] = []
    for origin, epoch in sorted({(e.origin, e.epoch) for e in entries.values()}):
        ledger = Ledger(origin, epoch)  # the rule lives in core; the store only feeds it
        for e in entries.values():
            if (e.origin, e.epoch) == (origin, epoch):
                ledger.owed.setdefault(e.dest, {})[e.n] = Owed(e.n, e.sent_ms, e.via, e.resent)
        for d, o in ledger.due(now_ms=now_ms, alert_ms=alert_ms, alive=alive):
            e = entries[(d, origin, epoch, o.n)]
            conn.execute(update(owed).where(and_(owed.c.dest == d, owed.c.origin == origin, owed.c.epoch == epoch,
                                                 owed.c.n == o.n)).values(sent_ms=o.sent_ms, resent=o.resent))
            out.append(OwedEntry(d, origin, epoch, o.n, e.delta_id, e.seq, e.first_ms, o.sent_ms, e.via, o.resent))
    out.sort(key=lambda e: (e.first_ms, e.dest, e.n))
    return out


def heard(conn: Connection) -> dict[str, tuple[int, int]]:
    """Per destination: (when a receipt it signed last carried a newer time, when what its receipts
    cover last grew), our clock, over every origin's stream we hold a receipt of."""
    rows = conn.execute(select(receipts_in.c.dest, func.max(receipts_in.c.heard_ms), func.max(receipts_in.c.progress_ms))
                        .group_by(receipts_in.c.dest)).all()
    return {dest: (int(h), int(p)) for dest, h, p in rows}


def owed_entries(conn: Connection, dest: str, limit: int = 1000) -> list[OwedEntry]:
    """What ``dest`` is owed, lowest counter first, at most ``limit``."""
    rows = conn.execute(select(owed).where(owed.c.dest == dest)
                        .order_by(owed.c.origin, owed.c.epoch, owed.c.n).limit(limit)).all()
    return [_entry(r) for r in rows]


# -- the destination's side ------------------------------------------------------------------------

def deliver(conn: Connection, dest: str, entries: Sequence[tuple[str, int, int, str]], now_ms: int) -> None:
    """Note counters that arrived here, each (origin, epoch, counter, outcome held|parked|refused).
    Raises ValueError (nothing noted) for an outcome or counter that is not a receipt entry."""
    streams: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for origin, epoch, n, outcome in entries:
        streams.setdefault((origin, epoch), []).append((n, outcome))
    for (origin, epoch), got in sorted(streams.items()):
        book = Inbox(dest)
        key = and_(inbox.c.origin == origin, inbox.c.epoch == epoch)
        row = conn.execute(select(inbox).where(key)).first()
        if row is not None:
            book.restore(origin, epoch, _ranges(row.held), _ranges(row.parked), _ranges(row.refused))
        for n, outcome in got:
            book.note(origin, epoch, n, outcome)
        held, parked, refused = book.book(origin, epoch)
        values = {"held": _text(held), "parked": _text(parked), "refused": _text(refused), "updated_ms": now_ms}
        if row is None:
            conn.execute(insert(inbox).values(origin=origin, epoch=epoch, **values))
        elif (row.held, row.parked, row.refused) != (values["held"], values["parked"], values["refused"]):
            conn.execute(update(inbox).where(key).values(**values))


def inbox_entries(dest: str, decided: Iterable[tuple[Delta, str]]) -> list[tuple[str, int, int, str]]:
    """What a destination notes in its inbox (``deliver``) for verified deltas decided
    here, each with its ``core.graph`` outcome: (origin, epoch, counter, outcome) for each delta
    whose signed ``chain`` numbers ``dest``. A DUPLICATE is left out: its first arrival was noted
    in the transaction that decided it, so note inside the ingest's transaction. A parked delta
    released later is noted again as held."""
    out = []
    for delta, outcome in decided:
        n = delta.chain.get(dest)
        if n is not None and outcome in (HELD, PARKED, REFUSED):
            out.append((delta.origin, delta.epoch, n, outcome))
    return out


def _inbox(conn: Connection, dest: str, origin: str | None = None) -> tuple[Inbox, list[tuple[str, int, int]]]:
    book = Inbox(dest)
    q = select(inbox).order_by(inbox.c.origin, inbox.c.epoch)
    if origin is not None:
        q = q.where(inbox.c.origin == origin)
    streams = []
    for row in conn.execute(q):
        book.restore(row.origin, int(row.epoch), _ranges(row.held), _ranges(row.parked), _ranges(row.refused))
        streams.append((row.origin, int(row.epoch), int(row.updated_ms)))
    return book, streams


def receipt(conn: Connection, dest: str, origin: str, epoch: int) -> Receipt:
    """The cumulative receipt ``dest`` (this replica) gives ``origin``'s stream ``epoch`` (empty
    when nothing of it arrived)."""
    book, _ = _inbox(conn, dest, origin)
    return book.receipt(origin, epoch)


def streams(conn: Connection) -> dict[tuple[str, int], int]:
    """Every (origin, epoch) stream something arrived on, and when its inbox last changed."""
    return {(o, int(e)): int(u) for o, e, u in conn.execute(select(inbox.c.origin, inbox.c.epoch, inbox.c.updated_ms))}


def gaps(conn: Connection, dest: str) -> dict[str, dict[int, tuple[Range, ...]]]:
    """Per origin and epoch with any: the counters missing below the highest one seen here."""
    book, found = _inbox(conn, dest)
    out: dict[str, dict[int, tuple[Range, ...]]] = {}
    for origin, epoch, _ in found:
        missing = book.gaps(origin, epoch)
        if missing:
            out.setdefault(origin, {})[epoch] = missing
    return out
