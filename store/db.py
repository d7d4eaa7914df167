"""Opening a store's database: engine settings and schema migrations.

SQLite (the default) gets WAL and synchronous=FULL so that a commit survives a
SIGKILL or power cut, and a busy timeout so a second reader (an operator's
backup, say) never fails a write outright. Every store is brought to the
latest schema by Alembic before use, so upgrading a node keeps its data.

A SQLite store holds personal data: its file is created (or tightened to) 0600 before SQLite
opens it, so the ``-wal`` and ``-shm`` files SQLite makes beside it get 0600 too, and a missing
directory is created 0700 (``store.files``). Errors never quote statement parameters
(``hide_parameters``): a traceback in a log must not carry a record's values.
"""

from __future__ import annotations

from pathlib import Path
import sqlite3
from typing import Sequence

from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url
from sqlalchemy import Connection, Table

from store.files import create_private, make_private, private_dir

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0014_log_relay"


def url_has_password(url: str) -> bool:
    """Whether a database URL spells out a password (configs must not: use a password file)."""
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    return bool(parsed.password) or "password" in parsed.query


def describe(url: str | URL) -> str:
    """The database a URL names, for messages: the SQLite file, or the server's host, port and
    database name. Never the user name or the password."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    where = parsed.host or "the local socket"
    if parsed.port:
        where += f":{parsed.port}"
    return f"{parsed.get_backend_name()} at {where}, database {parsed.database or '(default)'}"


def sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL, without options such as ``?timeout=``; None for any other URL."""
    if not url.startswith("sqlite:///"):
        return None
    return make_url(url).database or ""


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        parsed = make_url(url)
        path = parsed.database or ""
        if path and path != ":memory:" and not path.startswith("file:"):
            private_dir(Path(path).parent)
            create_private(path, truncate=False)
            for suffix in ("-wal", "-shm", "-journal"):  # left by an older release, maybe 0644
                make_private(path + suffix)
        # The busy timeout (seconds): 30 unless the URL says otherwise (sqlite:///node.db?timeout=5).
        timeout = float(parsed.query.get("timeout", 30))  # type: ignore[arg-type]  # one ?timeout= is a str
        engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False},
                               hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=4, hide_parameters=True)


def _mark(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple]) -> None:
    """One executemany of plain tuples, straight to the driver: the hot path writes hundreds of
    rows per batch, and per-row parameter processing would cost more than the insert itself.
    Values must already be the driver's types (str, int, bytes, bool, None), which suit SQLite
    and PostgreSQL alike."""
    mark = _mark(conn)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                         f"VALUES ({', '.join([mark] * len(columns))})", rows)


def update_rows(conn: Connection, table: Table, columns: Sequence[str], keys: Sequence[str], rows: list[tuple]) -> None:
    """``insert_rows`` for updates: each row is the new ``columns`` values, then the ``keys`` values."""
    mark = _mark(conn)
    conn.exec_driver_sql(f"UPDATE {table.name} SET {', '.join(f'{c} = {mark}' for c in columns)} "
                         f"WHERE {' AND '.join(f'{k} = {mark}' for k in keys)}", rows)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic). A store already at HEAD is left as it is without
    loading Alembic and its scripts, which cost every start of a process about 0.15 s of CPU."""
    if revision == "head" and current_revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
