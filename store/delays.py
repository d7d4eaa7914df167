"""Delivery-delay histograms: the counters ``assess`` reads its median and p95 from.

How this works: every change a replica receives from a peer adds one to the counters of
(the China-time day, month and year it was received, its origin province, its delay
bucket) and its delay to their sums (core.delays has the scheme). ``add`` runs in the
transaction that logs the changes, with one upsert per distinct key in the batch (a batch
is received at one ``now_ms``, so one day: three rows per (origin, bucket)), never one per
change; store.assess.delivery_delays reads the rows. Only replicas that hold records
(nodes, the national hub) keep them: a regional hub never assesses, so its hot path pays
nothing.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection

from core.delays import bucket, day_of, units
from store.db import _mark
from store.schema import delay_counts


def tally(changes: Iterable[tuple[str, int]], received_ms: int) -> dict[tuple[str, int], list[int]]:
    """(origin, bucket) -> [changes, sum of delays in ms] for ``changes`` (origin, at_ms) received
    at ``received_ms``; only origins that are provinces, a negative delay counted as 0."""
    out: dict[tuple[str, int], list[int]] = {}
    for origin, at_ms in changes:
        if not origin.startswith("province-"):
            continue
        delay = max(received_ms - at_ms, 0)
        key = (origin, bucket(delay))
        cell = out.get(key)
        if cell is None:
            out[key] = [1, delay]
        else:
            cell[0] += 1
            cell[1] += delay
    return out


def upsert(conn: Connection, day: int, cells: dict[tuple[str, int], list[int]]) -> None:
    """Add ``cells`` to the counters of ``day`` and of its month and year: one driver-level
    executemany of INSERT ... ON CONFLICT DO UPDATE (SQLite >= 3.24 and PostgreSQL alike)."""
    if not cells:
        return
    m = _mark(conn)
    t = delay_counts.name
    conn.exec_driver_sql(
        f"INSERT INTO {t} (level, unit, origin, bucket, changes, total_ms) VALUES ({m}, {m}, {m}, {m}, {m}, {m}) "
        f"ON CONFLICT (level, unit, origin, bucket) DO UPDATE SET changes = {t}.changes + excluded.changes, "
        f"total_ms = {t}.total_ms + excluded.total_ms",
        [(level, unit, origin, b, n, total) for level, unit in units(day) for (origin, b), (n, total) in cells.items()])


def add(conn: Connection, changes: Iterable[tuple[str, int]], received_ms: int) -> None:
    """Count ``changes`` (origin, at_ms), received from a peer at ``received_ms``."""
    upsert(conn, day_of(received_ms), tally(changes, received_ms))
