"""Today's date for a node or hub, with one documented test seam.

How this works: ``today()`` is the local calendar date, unless the process was started
with ``YIPANQI_TODAY=YYYY-MM-DD`` in its environment, which fixes it. The seam exists so
tests can make a request overdue without waiting days (a node started "in the past"
sends a request whose due date has passed everywhere else); it is never set in a
deployment, and a malformed value stops the process at start-up with the reason.
"""

from __future__ import annotations

import datetime as dt
import os

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
