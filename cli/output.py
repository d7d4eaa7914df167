"""Everything the CLI shows a person goes through here: data is escaped, never interpreted.

How this works: values in records, reports, quarantine entries and server errors come from
operators and peers, and may hold terminal control sequences (ESC, U+009B CSI, OSC titles) or
text that Rich would read as markup (``[/]`` crashes a table, ``[link=...]`` becomes a link,
``:smile:`` an emoji). So:

* ``text(value)`` makes a ``rich.text.Text`` of a value with every unsafe character spelled out
  (``core.printable.escape``); a Text is never parsed as markup. Our own styling is a ``style``.
* ``console()`` is a Rich console with markup, emoji and highlighting off, so that even a plain
  string printed by mistake is shown as it is.
* ``plain(value)`` is the escaped string, for ``click.echo`` and error messages (``Failure``).
* ``json_text(obj)`` is ``--json`` output: exact JSON, the same values, with the characters a
  terminal would act on written as ``\\uXXXX`` escapes (``core.printable.escape_json``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from core.printable import escape, escape_json


def plain(value: object) -> str:
    """``value`` as a string that is safe on a terminal (unsafe characters escaped)."""
    return escape(value if isinstance(value, str) else str(value))


def text(value: object, style: str = "") -> Text:
    """A table cell or line: ``value`` escaped, as Text (never markup). None shows as ''."""
    return Text("" if value is None else plain(value), style=style)


def shown(value: object) -> Text:
    """A value as ``repr`` shows it (strings quoted), escaped: for conflict versions."""
    return text(repr(value))


def utc(ms: object, *, label: bool = True) -> Text:
    """A time in milliseconds since the epoch (a peer's claim) as ``YYYY-MM-DD HH:MM:SS UTC``
    (``label=False`` drops " UTC" where a column header says it), "-" if unknown, or the value
    itself, escaped, if it is no time. Every absolute time the CLI prints is UTC and says so."""
    if ms is None:
        return Text("-")
    try:
        when = dt.datetime.fromtimestamp(int(ms) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[call-overload]  # not a number: caught below
    except (TypeError, ValueError, OverflowError, OSError):
        return text(ms)
    return Text(when + (" UTC" if label else ""))


def console(*, stderr: bool = False, min_width: int = 0) -> Console:
    """The console for everything the CLI prints with Rich: data is never markup, emoji or
    highlighted. Piped (no terminal), Rich assumes 80 columns and cuts columns to fit; tables
    with whole ids ask for ``min_width``."""
    out = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not out.is_terminal and out.width < min_width:
        out = Console(stderr=stderr, markup=False, emoji=False, highlight=False, width=min_width)
    return out


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """``obj`` as exact JSON (``--json`` output), safe on a terminal."""
    return escape_json(json.dumps(obj, ensure_ascii=False, indent=indent))


def echo_json(obj: Any, *, indent: int | None = None) -> None:
    click.echo(json_text(obj, indent=indent))


class Failure(click.ClickException):
    """A ClickException whose message (which may quote data: a server error, a file's line) is escaped."""

    def __init__(self, message: str) -> None:
        super().__init__(plain(message))


class SafeGroup(click.Group):
    """The top-level command group: any ClickException's message is escaped before click prints it,
    whichever command raised it (click's own usage errors quote the command line, too)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            err.message = plain(err.message)  # type: ignore[misc]  # click marks it Final; cleaned once, before shown
            raise
