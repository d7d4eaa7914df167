"""Whether this process's own database is usable, and since when it is not.

How this works. ``watch(engine, health)`` hooks SQLAlchemy's ``handle_error``
event, the one place every driver error passes through (statements, commits,
and connecting, after the pool's pre-ping has had its chance to replace a dead
connection). An outage of the database itself (``OperationalError`` or
``InterfaceError``: the server down or restarting, a connection cut, the file
locked past the busy timeout, the disk full; for SQLite, which reports a
syntax error as an ``OperationalError`` too, only the result codes in
``SQLITE_OUTAGES``) is re-raised as
``core.errors.StoreUnavailable`` with the driver's first message line and the
database it is about (``store.db.describe``: the file, or host and port, never a
password), so no layer above the store ever sees an SQLAlchemy type, and
``health`` notes the outage. Other driver errors (integrity, programming) are bugs and stay as they
are.

An outage ends with the next write that commits (``Store`` calls
``health.wrote()``); one where the database could not be reached at all also
ends with the next statement that runs (``after_cursor_execute``): reads
succeed on a locked SQLite file, so a read alone does not end a lock.

``Health`` calls its listener once when an outage starts and once when it ends,
so a process logs each outage once, however many operations fail during it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Engine, event
from sqlalchemy import Connection
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import InterfaceError, OperationalError

from core.errors import StoreUnavailable
from store.db import describe

__all__ = ["Health", "HealthReport", "watch"]


@dataclass(frozen=True, slots=True)
class HealthReport:
    ok: bool
    down_since_ms: int | None
    last_error: str | None
    outages: int  # since the process started
    database: str | None = None  # which database (store.db.describe), once an outage named it


# listener(event, report): event is "down" (an outage started) or "up" (it ended).
Listener = Callable[[str, HealthReport], None]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Health:
    def __init__(self, clock: Callable[[], int] = _wall_ms) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: int | None = None
        self._error: str | None = None
        self._unreachable = False
        self._outages = 0
        self._database: str | None = None
        self.listener: Listener | None = None

    def now_ms(self) -> int:
        return self._clock()

    @property
    def ok(self) -> bool:
        return self._down_since is None

    def report(self) -> HealthReport:
        """``last_error`` is the database's message during an outage, None once it is over."""
        with self._lock:
            return HealthReport(self._down_since is None, self._down_since, self._error, self._outages,
                                self._database)

    def failed(self, err: StoreUnavailable) -> None:
        with self._lock:
            started = self._down_since is None
            if started:
                self._down_since = self._clock()
                self._outages += 1
            self._error, self._unreachable = err.reason, err.unreachable
            self._database = err.database or self._database
        if started:
            self._tell("down")

    def wrote(self) -> None:
        """A write committed: the store is usable."""
        if self._down_since is not None:
            self._recover()

    def reached(self) -> None:
        """A statement ran: ends an outage in which the database could not be reached."""
        if self._down_since is not None and self._unreachable:
            self._recover()

    def _recover(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            self._down_since, self._error = None, None
        self._tell("up")

    def _tell(self, what: str) -> None:
        if self.listener is not None:
            self.listener(what, self.report())


# SQLite primary result codes that mean the database cannot be used right now, not a bug:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
SQLITE_OUTAGES = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def _is_outage(ctx: ExceptionContext) -> bool:
    if ctx.is_disconnect:
        return True
    if not isinstance(ctx.sqlalchemy_exception, (OperationalError, InterfaceError)):
        return False
    code = getattr(ctx.original_exception, "sqlite_errorcode", None)
    return code is None or (code & 0xFF) in SQLITE_OUTAGES


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0].strip()
    return line[:300]


def watch(engine: Engine, health: Health) -> None:
    """Name ``engine``'s database outages ``StoreUnavailable`` and note them in ``health``."""
    database = describe(engine.url)

    @event.listens_for(engine, "handle_error")
    def _outage(ctx: ExceptionContext) -> StoreUnavailable | None:
        if ctx.is_pre_ping:  # the pool is checking a pooled connection; it reconnects on its own
            return None
        if not _is_outage(ctx):
            return None
        original = ctx.original_exception
        unreachable = bool(ctx.is_disconnect) or ctx.connection is None
        err = StoreUnavailable(_first_line(original), unreachable=unreachable, database=database)
        health.failed(err)
        return err

    @event.listens_for(engine, "after_cursor_execute")
    def _ran(conn: Connection, cursor: object, statement: str, parameters: object, context: object,
             executemany: bool) -> None:
        health.reached()
