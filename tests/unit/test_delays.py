"""The delay bucket scheme and the day a change is counted on (core.delays)."""

from __future__ import annotations

import datetime as dt
import random

from core.delays import SUB, bounds, bucket, day_number, day_of


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
