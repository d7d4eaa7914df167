"""Delivery delays kept as histograms: the bucket scheme and the day a change is counted on.

How this works: ``assess`` reports, per origin province and period, the median and p95 of
the delays of the changes a replica received (delay = received_ms - the author's at_ms, a
negative one counted as 0). Ranking every change of the period costs time in proportion to
the history, so a replica keeps counters instead: per (day, origin, bucket) the number of
changes and the sum of their delays, added in the transaction that logs them, and the same
per month and per year. A period's median and p95 are then read from a bounded number of
rows (see ``spans`` below).

Buckets are log-spaced with integer arithmetic only (the HdrHistogram layout): delays under
``2 * SUB`` ms have a bucket each (exact); above, each power of two is cut into ``SUB`` equal
buckets, so a bucket [lo, lo + width) has width <= lo / SUB. A figure is the mean delay of
the bucket its rank falls in, which lies in the same bucket as the exact value: it is within
1/SUB (12.5 %) of the exact nearest-rank figure, and exact when the bucket holds one distinct
delay (always under 16 ms).

Days are counted in China time (UTC+8), the zone ``assess`` periods are written in, so a
period of whole days maps onto whole rows: day = (received_ms + 8 h) // 24 h, days since
1970-01-01. Each change is counted three times, for its day, its month and its year
(``units``); a period is cut into whole years, whole months and the days left over
(``spans``: at most 7 ranges), so it reads at most ~60 days', ~22 months' and its years'
rows, however long the history.
"""

from __future__ import annotations

import datetime as dt

SUB = 8  # buckets per power of two; the relative width of a bucket is at most 1/SUB
_SHIFT = SUB.bit_length()  # log2(SUB) + 1: the bits kept below the leading one
DAY_MS = 86_400_000
OFFSET_MS = 8 * 3_600_000  # China time, UTC+8
EPOCH = dt.date(1970, 1, 1)


def bucket(delay_ms: int) -> int:
    """The bucket of a delay in ms (negative: 0). Monotone: a longer delay never gets a lower bucket."""
    if delay_ms < 2 * SUB:
        return max(delay_ms, 0)
    e = delay_ms.bit_length() - _SHIFT
    return SUB * e + (delay_ms >> e)


def bounds(b: int) -> tuple[int, int]:
    """[lo, hi) of the delays in bucket ``b``."""
    if b < 2 * SUB:
        return b, b + 1
    e = b // SUB - 1
    lo = (b % SUB + SUB) << e
    return lo, lo + (1 << e)


def day_of(ms: int) -> int:
    """The China-time day (days since 1970-01-01) of a UTC time in ms."""
    return (ms + OFFSET_MS) // DAY_MS


def day_number(date: dt.date) -> int:
    return (date - EPOCH).days


DAY, MONTH, YEAR = 0, 1, 2  # the levels: a unit is a day number, year * 12 + month - 1, or a year
FIRST, LAST = dt.date(1970, 1, 1), dt.date(9999, 12, 31)


def units(day: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(level, unit) of the day, month and year a day number belongs to."""
    d = EPOCH + dt.timedelta(days=day)
    return (DAY, day), (MONTH, d.year * 12 + d.month - 1), (YEAR, d.year)


def _month_start(m: int) -> dt.date:
    return dt.date(m // 12, m % 12 + 1, 1)


def spans(start: dt.date | None, end: dt.date | None) -> list[tuple[int, int, int]]:
    """The days ``start`` to ``end`` (both included, None = open) as (level, first unit, last
    unit) ranges that cover each day exactly once: whole years, then whole months, then days."""
    a, b = start or FIRST, end or LAST
    out: list[tuple[int, int, int]] = []
    if a > b:
        return out

    def days(x: dt.date, y: dt.date) -> None:
        if x <= y:
            out.append((DAY, day_number(x), day_number(y)))

    def months(x: dt.date, y: dt.date) -> None:
        if x > y:
            return
        m1 = x.year * 12 + x.month - 1 + (x.day != 1)
        m2 = y.year * 12 + y.month - 1 - ((y + dt.timedelta(days=1)).day != 1)
        if m1 > m2:
            days(x, y)
            return
        out.append((MONTH, m1, m2))
        days(x, _month_start(m1) - dt.timedelta(days=1))
        if m2 + 1 < 12 * (LAST.year + 1):  # else y is the last day there is
            days(_month_start(m2 + 1), y)

    y1 = a.year + (a != dt.date(a.year, 1, 1))
    y2 = b.year - (b != dt.date(b.year, 12, 31))
    if y1 > y2:
        months(a, b)
        return out
    out.append((YEAR, y1, y2))
    months(a, dt.date(y1, 1, 1) - dt.timedelta(days=1))
    if y2 < LAST.year:
        months(dt.date(y2 + 1, 1, 1), b)
    return out
