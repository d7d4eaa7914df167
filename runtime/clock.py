"""A node's or hub's wall clock and today's date, each with one documented test seam.

How this works: ``now_ms()`` is the wall clock in milliseconds, and every wall-clock
reading of a running process goes through it (runtime.replica.now_ms, the report desk,
the store's outage clock): hybrid timestamps and ``at_ms`` of local writes, ``received_ms``,
report ages. The process's wiring (node/server.py, hub/server.py) calls ``set_offset`` once at
start with its config's ``[timing].clock_offset_s`` (default 0): a test runs a node "on a
machine whose clock is 3 h ahead" with 10800, with no patching of ``time``. Monotonic clocks
(timeouts, backoff, keepalive), certificate validity and gRPC's deadlines keep the true time;
on a machine whose clock is really off those would be off too, but they only measure
intervals or compare with the same clock, so nothing the tests check depends on them.

``today()`` is the local calendar date, unless the process was started
with ``YIPANQI_TODAY=YYYY-MM-DD`` in its environment, which fixes it. The seam exists so
tests can make a request overdue without waiting days (a node started "in the past"
sends a request whose due date has passed everywhere else); it is never set in a
deployment, and a malformed value stops the process at start-up with the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import time

ENV = "YIPANQI_TODAY"


def _fixed() -> dt.date | None:
    text = os.environ.get(ENV, "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"{ENV}={text!r}: not a date (YYYY-MM-DD)") from None


_FIXED = _fixed()


def today() -> dt.date:
    return _FIXED or dt.date.today()


_offset_ms = 0  # set once at start from [timing].clock_offset_s, before any thread reads the clock


def set_offset(seconds: float) -> None:
    """Shift this process's wall clock by ``seconds`` (may be negative); 0 is the true time."""
    global _offset_ms
    _offset_ms = round(seconds * 1000)


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch, shifted by the configured offset."""
    return time.time_ns() // 1_000_000 + _offset_ms
