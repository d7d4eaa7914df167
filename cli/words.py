"""Small wording helpers shared by the commands: counts and times as people read them, and
a console wide enough for whole ids.

Times: every absolute time the CLI prints is UTC and says so ("2026-12-02 05:42:26 UTC"), the
same on every machine; relative ages ("5.0s ago") need no zone.
"""

from __future__ import annotations

import datetime as dt

from rich.console import Console


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``1 record``, ``2 records``, ``0 records``."""
    return f"{n} {singular if n == 1 else (plural_form or singular + 's')}"


def utc(ms: int | None) -> str:
    """A time in milliseconds since the epoch, as ``YYYY-MM-DD HH:MM:SS UTC`` ("-" if unknown)."""
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def console(min_width: int = 0) -> Console:
    """A rich console. Piped (no terminal), rich assumes 80 columns and cuts columns to fit;
    tables with whole ids need ``min_width``, so they get it."""
    out = Console()
    if not out.is_terminal and out.width < min_width:
        out = Console(width=min_width)
    return out
