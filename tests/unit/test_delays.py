"""The delay bucket scheme and the day a change is counted on (core.delays)."""

from __future__ import annotations

import datetime as dt
import random

from core.delays import DAY, MONTH, SUB, YEAR, bounds, bucket, day_number, day_of, spans, units


def test_every_delay_lies_in_its_bucket_and_buckets_are_contiguous_and_narrow() -> None:
    """Exhaustive to 2**17 ms (~2 min), then sampled to 2**62: each delay is inside its bucket's
    bounds, buckets follow each other without gaps, and a bucket is at most 1/SUB of its lower
    bound wide (exact, one delay each, under 2 * SUB ms)."""
    prev = 0
    for d in range(1 << 17):
        b = bucket(d)
        lo, hi = bounds(b)
        assert lo <= d < hi
        assert b in (prev, prev + 1)
        assert hi - lo == 1 if d < 2 * SUB else hi - lo <= lo / SUB
        prev = b
    rng = random.Random(8)
    for _ in range(20_000):
        d = rng.randrange(1 << rng.randrange(17, 63))
        lo, hi = bounds(bucket(d))
        assert lo <= d < hi and hi - lo <= max(1, lo / SUB)
        assert bounds(bucket(d) + 1)[0] == hi  # the next bucket starts where this one ends
    assert bucket(-5) == bucket(0) == 0  # a clock ahead of ours: no delay
    assert bucket(3_600_000) < 160  # delays up to an hour: at most 160 rows per origin and day


def test_days_are_china_time() -> None:
    midnight_utc8 = int(dt.datetime(2026, 3, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp() * 1000)
    assert day_of(midnight_utc8) == day_number(dt.date(2026, 3, 10))
    assert day_of(midnight_utc8 - 1) == day_number(dt.date(2026, 3, 9))
    assert day_of(midnight_utc8 + 86_400_000 - 1) == day_number(dt.date(2026, 3, 10))
    assert day_number(dt.date(1970, 1, 1)) == 0


def _unit_days(level: int, unit: int) -> tuple[dt.date, dt.date]:
    if level == DAY:
        d = dt.date(1970, 1, 1) + dt.timedelta(days=unit)
        return d, d
    if level == MONTH:
        first = dt.date(unit // 12, unit % 12 + 1, 1)
        nxt = dt.date(unit // 12 + (unit % 12 == 11), (unit % 12 + 1) % 12 + 1, 1)
        return first, nxt - dt.timedelta(days=1)
    return dt.date(unit, 1, 1), dt.date(unit, 12, 31)


def test_spans_cover_each_day_of_a_period_exactly_once_in_few_ranges() -> None:
    """Random periods (a day to years, across month and year ends): the ranges' units lie inside
    the period and their days add up to it (so none overlaps or is missing); at most 7 ranges;
    each day's own units (``units``) are what the ranges select."""
    rng = random.Random(16)
    for _ in range(2000):
        a = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(1500))
        b = a + dt.timedelta(days=rng.choice([0, 1, 5, 30, 40, 200, 400, 800]) + rng.randrange(40))
        ranges = spans(a, b)
        assert len(ranges) <= 7
        covered = 0
        for level, lo, hi in ranges:
            for unit in range(lo, hi + 1):
                first, last = _unit_days(level, unit)
                assert a <= first and last <= b, (a, b, level, unit)
                covered += (last - first).days + 1
        assert covered == (b - a).days + 1, (a, b, ranges)
        d = a + dt.timedelta(days=rng.randrange((b - a).days + 1))
        assert any(lo <= u <= hi for lv, u in units(day_number(d)) for level, lo, hi in ranges if lv == level)
    assert spans(None, None) == [(YEAR, 1970, 9999)]
    assert spans(dt.date(2026, 3, 2), dt.date(2026, 3, 1)) == []
