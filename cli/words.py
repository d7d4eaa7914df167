"""Counts as people read them: "1 record", "2 records". (Times and consoles: cli.output.)"""

from __future__ import annotations


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """``1 record``, ``2 records``, ``0 records``."""
    return f"{n} {singular if n == 1 else (plural_form or singular + 's')}"
