"""Per-kind SQL side tables, kept from record states in the record's own transaction.

How this works: a kind that names a ``project`` function (core.kinds) has one
side table here, keyed by the record id (the table's first primary-key
column). Whenever the store saves states, locally written or merged from a
peer, it calls ``save`` in the same transaction: a live record's row is
replaced by its projection, a deleted record's row is removed. Values come
from shown values, which on receipt are unvalidated beyond routing fields, so
each is fitted to its column (text that fits and holds no NUL, an int for an
integer column) or stored as NULL; the record state stays authoritative.
Kinds without ``project`` (person) cost nothing here.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from sqlalchemy import Integer, String, Table, delete, select
from sqlalchemy import Column, Connection

from core.kinds import get_kind
from core.record import RecordState
from store.db import insert_rows
from store.schema import certificates, requests, services

TABLES: dict[str, Table] = {"certificate": certificates, "service": services, "request": requests}


def key_column(table: Table) -> str:
    return next(iter(table.primary_key.columns)).name


def _fit(column: Column[Any], value: object) -> object:
    if isinstance(column.type, String):
        size = column.type.length
        ok = isinstance(value, str) and "\x00" not in value and (size is None or len(value) <= size)
        return value if ok else None
    if isinstance(column.type, Integer):
        return value if type(value) is int and -2**63 <= value < 2**63 else None
    return value


def row(table: Table, record_id: str, projected: Mapping[str, object]) -> tuple:
    """The side-table row for one record, in the table's column order."""
    key = key_column(table)
    return tuple(record_id if c.name == key else _fit(c, projected.get(c.name)) for c in table.columns)


def save(conn: Connection, states: Sequence[RecordState]) -> None:
    """Bring the side tables in line with ``states`` (the last state per record wins)."""
    by_kind: dict[str, dict[str, RecordState]] = {}
    for state in states:
        if state.kind in TABLES:
            by_kind.setdefault(state.kind, {})[state.record_id] = state
    for kind, latest in by_kind.items():
        table = TABLES[kind]
        project = get_kind(kind).project
        assert project is not None, f"kind {kind} has a side table but no projection"
        key = table.c[key_column(table)]
        ids = list(latest)
        for i in range(0, len(ids), 500):
            conn.execute(delete(table).where(key.in_(ids[i:i + 500])))
        rows = [row(table, rid, project(st.values())) for rid, st in latest.items() if not st.deleted]
        if rows:
            insert_rows(conn, table, [c.name for c in table.columns], rows)


def select_rows(conn: Connection, kind: str, where: Mapping[str, object], order_by: Sequence[str] = ()) -> list[dict]:
    """Side-table rows of ``kind`` whose columns equal ``where``, ordered by ``order_by`` then the key."""
    table = TABLES[kind]
    q = select(table)
    for name, value in where.items():
        q = q.where(table.c[name] == value)
    q = q.order_by(*(table.c[n] for n in order_by), table.c[key_column(table)])
    return [dict(r._mapping) for r in conn.execute(q)]
