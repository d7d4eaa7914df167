"""CSV files as spreadsheets see them: formulas neutralised, lines bounded.

How this works:

* Formula injection (the OWASP rule): a spreadsheet runs a cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return as a formula (``=HYPERLINK(...)``, ``@SUM(...)``).
  ``neutralise`` prefixes such a cell with a single quote, which spreadsheets show as text, and
  ``restore`` takes it off again on import. So that the round trip is exact, a cell that already
  starts with a quote followed by one of those characters (or by another quote) gets a quote
  too: ``restore`` removes one quote exactly when the next character is a trigger or a quote,
  and ``neutralise`` adds one exactly in the cases where that would otherwise change the value.
  A hand-written ``'Brien`` stays as it is.
* Bounded reading: ``BoundedLines`` hands the csv module one physical line at a time, each at
  most ``MAX_LINE`` characters; a longer line is skipped (read and dropped in pieces, never held
  whole) and raises ``Oversized`` for that line number. The iterator goes on after raising, and
  the csv reader starts a fresh record on its next call, so the rows after it still load.
  ``csv.field_size_limit`` is set to ``MAX_FIELD``: a longer field is a ``csv.Error`` for its
  line, and the same holds. Memory is bounded by ``MAX_LINE`` whatever the file holds.
"""

from __future__ import annotations

import csv
from typing import TextIO

TRIGGERS = frozenset("=+-@\t\r")
MAX_FIELD = 4096  # characters; the longest person field is 256
MAX_LINE = 65536  # characters of one physical line: 15 fields of MAX_FIELD, quoted, fit


def neutralise(cell: object) -> object:
    """A cell as written to a CSV file: a string a spreadsheet would run as a formula gets a leading quote."""
    if not isinstance(cell, str) or not cell:
        return cell
    if cell[0] in TRIGGERS or (cell[0] == "'" and len(cell) > 1 and (cell[1] in TRIGGERS or cell[1] == "'")):
        return "'" + cell
    return cell


def restore(cell: str) -> str:
    """A cell as read from a CSV file: the quote ``neutralise`` added is taken off (and only that)."""
    if len(cell) > 1 and cell[0] == "'" and (cell[1] in TRIGGERS or cell[1] == "'"):
        return cell[1:]
    return cell


class Oversized(Exception):
    """A physical line over ``MAX_LINE`` characters (skipped)."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"line longer than {limit} characters; skipped")
        self.line = line


class BoundedLines:
    """An iterator of a text file's physical lines, none longer than ``limit`` (see the module header).

    ``line`` is the number of physical lines consumed so far (the last one returned or skipped).
    """

    def __init__(self, handle: TextIO, limit: int = MAX_LINE) -> None:
        self.handle = handle
        self.limit = limit
        self.line = 0

    def __iter__(self) -> "BoundedLines":
        return self

    def __next__(self) -> str:
        text = self.handle.readline(self.limit + 1)
        if not text:
            raise StopIteration
        self.line += 1
        if len(text) > self.limit and text[-1] not in "\r\n":
            rest = text
            while rest and rest[-1] not in "\r\n":  # drop the rest of the line, a piece at a time
                rest = self.handle.readline(self.limit)
            raise Oversized(self.line, self.limit)
        return text


def reader(handle: TextIO) -> tuple[csv.DictReader, BoundedLines]:
    """A DictReader over bounded lines of ``handle`` (fields over ``MAX_FIELD`` are csv errors)."""
    csv.field_size_limit(MAX_FIELD)
    lines = BoundedLines(handle)
    return csv.DictReader(lines), lines
