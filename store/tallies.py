"""Migrants per (household province, residence province), kept as running totals.

How this works: ``assess`` and ``report flows`` need the number of live persons living
outside their household province for every province pair. Counting them is a scan of
every person row, so the store keeps the totals instead, in the ``counters`` table
(names ``pair:<household>:<residence>``), bumped in the same transaction as the record
rows they summarise: each saved person state subtracts its previous pair (if it was a
live migrant) and adds its new one. Migration 0005_requests fills them in from the
records once; after that they are read in one query of at most 32 x 31 rows.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from sqlalchemy import select
from sqlalchemy import Connection

from core.record import RecordState
from store.db import insert_rows, update_rows
from store.schema import counters

PREFIX = "pair:"
KIND = "person"


def _pair(state: RecordState | None) -> tuple[str, str] | None:
    if state is None or state.deleted:
        return None
    h, r = _shown(state, "household_province"), _shown(state, "residence_province")
    ok = isinstance(h, str) and isinstance(r, str) and len(h) == 2 == len(r) and h != r
    return (h, r) if ok else None  # type: ignore[return-value]  # ok: both are str


def _shown(state: RecordState, name: str) -> object:
    """``state.values().get(name)`` without copying every value (two fields of every saved state)."""
    versions = state.fields.get(name)
    return versions[0].value if versions else None


def deltas(states: Sequence[tuple[RecordState, RecordState | None]]) -> Counter[tuple[str, str]]:
    """How the pair totals change when ``states`` (new state, the state it replaces) are saved."""
    out: Counter[tuple[str, str]] = Counter()
    for state, prior in states:
        if state.kind != KIND:
            continue
        before, after = _pair(prior), _pair(state)
        if before != after:
            if before is not None:
                out[before] -= 1
            if after is not None:
                out[after] += 1
    return out


def bump(conn: Connection, changes: Counter[tuple[str, str]], now_ms: int) -> None:
    """Apply ``changes`` in three statements whatever their number (one read, one driver-level
    executemany each for the updates and the new pairs): this runs in every batch a hub or node
    applies, and a batch of new migrants touches hundreds of pairs."""
    names = {f"{PREFIX}{h}:{r}": n for (h, r), n in changes.items() if n}
    if not names:
        return
    have = dict(conn.execute(select(counters.c.name, counters.c.value).where(counters.c.name.in_(list(names)))).all())
    updates = [(int(have[name]) + n, now_ms, name) for name, n in names.items() if name in have]
    inserts = [(name, n, now_ms) for name, n in names.items() if name not in have]
    if updates:
        update_rows(conn, counters, ("value", "at_ms"), ("name",), updates)
    if inserts:
        insert_rows(conn, counters, ("name", "value", "at_ms"), inserts)


def pairs(conn: Connection) -> list[tuple[str, str, int]]:
    """(household, residence, live migrants) for every pair with any."""
    rows = conn.execute(select(counters.c.name, counters.c.value).where(counters.c.name.startswith(PREFIX)))
    out = []
    for name, value in rows:
        h, _, r = name[len(PREFIX):].partition(":")
        if value > 0:
            out.append((h, r, int(value)))
    return sorted(out)
