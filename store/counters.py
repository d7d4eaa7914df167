"""Running totals kept in the same transactions as the data they summarise.

Live and conflicted record counts, and per origin the last change applied with
its write time and lag, so status answers in O(1) however many records and
changes a store holds. Functions take an open connection.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy import Connection

from store import records
from store.schema import counters

LIVE, CONFLICTED = "records:live", "records:conflicted"


def initialise(conn: Connection) -> None:
    """Count once on the first open of a store (or of one from before counters existed)."""
    have = set(conn.execute(select(counters.c.name).where(counters.c.name.in_([LIVE, CONFLICTED]))).scalars())
    if LIVE not in have:
        put(conn, LIVE, records.count(conn), 0)
    if CONFLICTED not in have:
        put(conn, CONFLICTED, records.count(conn, conflicted_only=True), 0)


def bump(conn: Connection, name: str, delta: int) -> None:
    if delta:
        conn.execute(update(counters).where(counters.c.name == name).values(value=counters.c.value + delta))


def put(conn: Connection, name: str, value: int, at_ms: int) -> None:
    done = conn.execute(update(counters).where(counters.c.name == name).values(value=value, at_ms=at_ms))
    if done.rowcount == 0:
        conn.execute(insert(counters).values(name=name, value=value, at_ms=at_ms))


def read(conn: Connection, prefix: str) -> dict[str, tuple[int, int]]:
    rows = conn.execute(select(counters.c.name, counters.c.value, counters.c.at_ms)
                        .where(counters.c.name.startswith(prefix))).all()
    return {name: (int(value), int(at_ms)) for name, value, at_ms in rows}


def note_origins(conn: Connection, applied: Iterable[tuple[str, int, int]], now_ms: int) -> None:
    """Keep, per origin, the highest seq applied and that change's write time (for lag).

    ``applied`` holds (origin, seq, written at ms) of the changes just applied.
    """
    best: dict[str, tuple[int, int]] = {}
    for origin, seq, at_ms in applied:
        if seq > best.get(origin, (0, 0))[0]:
            best[origin] = (seq, at_ms)
    if not best:
        return
    known = {name: value for name, value in conn.execute(
        select(counters.c.name, counters.c.value).where(counters.c.name.in_([f"origin:{o}" for o in best])))}
    for origin, (seq, at_ms) in best.items():
        if known.get(f"origin:{origin}", 0) >= seq:
            continue  # an older change arriving late (another path): the summary stands
        put(conn, f"origin:{origin}", seq, at_ms)  # last seq, its write time
        put(conn, f"arrived:{origin}", max(0, now_ms - at_ms), now_ms)  # its lag, arrival


def last_applied(conn: Connection) -> dict[str, tuple[int, int, int]]:
    """Per origin: (last seq, its write time ms, when we received it ms)."""
    arrived = read(conn, "arrived:")
    out = {}
    for name, (seq, at_ms) in read(conn, "origin:").items():
        origin = name.removeprefix("origin:")
        out[origin] = (seq, at_ms, arrived.get(f"arrived:{origin}", (0, at_ms))[1])
    return out
