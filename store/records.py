"""Current record states: loading, saving with their projections, and paging through them.

A record row holds the state (canonical JSON of ``RecordState``) plus columns
derived from it for queries: deleted, conflicted, the provinces it involves,
and projections of shown values for statistics. Functions take an open
connection; the Store decides transactions and keeps the counters.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import and_, func, select
from sqlalchemy import ColumnElement, Connection

from core import canonical
from core.change import state_provinces
from core.kinds import open_conflicts
from core.record import RecordState
from store.changelog import routes_text
from store.db import insert_rows, update_rows
from store.schema import records

_VALUES = ("state", "deleted", "conflicted", "provinces", "updated_ms", "household", "residence", "moved_on",
           "id_number", "person_name", "birth_date", "sex")
_IDENTITY = (("id_number", 18), ("name", 64), ("birth_date", 10), ("sex", 1))  # person fields -> their columns


def _text(value: object, size: int) -> str | None:
    """A projection column's value: text that fits, else nothing (the state stays authoritative).
    Values come unvalidated from peers (only routing fields are checked on receipt): a NUL,
    which PostgreSQL text cannot hold, would fail the whole batch."""
    return value if isinstance(value, str) and len(value) <= size and "\x00" not in value else None


def _shown(fields, name: str, size: int) -> str | None:  # type: ignore[no-untyped-def]
    """``_text`` of a field's shown value (its first version's), read in place."""
    versions = fields.get(name)
    return _text(versions[0].value, size) if versions else None


def _state(kind: str, record_id: str, raw: bytes) -> RecordState:
    return RecordState.from_json(kind, record_id, canonical.loads(bytes(raw)))


def load(conn: Connection, kind: str, record_id: str) -> RecordState | None:
    raw = conn.execute(
        select(records.c.state).where(and_(records.c.kind == kind, records.c.record_id == record_id))
    ).scalar()
    return None if raw is None else _state(kind, record_id, raw)


def load_many(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RecordState | None]:
    """Current states of many records in a few queries (None where absent)."""
    out: dict[tuple[str, str], RecordState | None] = {k: None for k in keys}
    by_kind: dict[str, list[str]] = {}
    for kind, record_id in out:
        by_kind.setdefault(kind, []).append(record_id)
    for kind, ids in by_kind.items():
        for i in range(0, len(ids), 500):
            q = select(records.c.record_id, records.c.state).where(
                and_(records.c.kind == kind, records.c.record_id.in_(ids[i:i + 500])))
            for rid, raw in conn.execute(q):
                out[(kind, rid)] = _state(kind, rid, raw)
    return out


def save_many(conn: Connection, states: Sequence[tuple[RecordState, RecordState | None]], now_ms: int) -> tuple[int, int]:
    """Write record states, each with the state it replaces (None: a new record).

    Returns the change in (live records, live records with open conflicts), for the counters.
    """
    inserts, updates = [], []
    live = conflicted = 0
    for state, prior in states:
        now_live = not state.deleted
        now_conflicted = bool(open_conflicts(state))  # rules that merging broke too (core.kinds)
        was_live = prior is not None and not prior.deleted
        was_conflicted = was_live and bool(open_conflicts(prior))  # type: ignore[arg-type]  # was_live: prior is not None
        live += now_live - was_live
        conflicted += (now_live and now_conflicted) - was_conflicted
        fields = state.fields  # each projected field's shown value (state.values() would copy them all)
        values = (state.to_bytes(), state.deleted, now_conflicted, routes_text(state_provinces(state)), now_ms,
                  _shown(fields, "household_province", 2), _shown(fields, "residence_province", 2),
                  _shown(fields, "moved_in_on", 10),
                  *((_shown(fields, f, size) if state.kind == "person" else None) for f, size in _IDENTITY))
        if prior is None:
            inserts.append((state.kind, state.record_id, *values))
        else:
            updates.append((*values, state.kind, state.record_id))
    if inserts:
        insert_rows(conn, records, ("kind", "record_id", *_VALUES), inserts)
    if updates:
        update_rows(conn, records, _VALUES, ("kind", "record_id"), updates)
    return live, conflicted


def page(conn: Connection, kind: str, after: str, *, include_deleted: bool, conflicted_only: bool,
         limit: int) -> list[RecordState]:
    """Up to ``limit`` records of a kind with ids after ``after``, in id order."""
    q = select(records.c.record_id, records.c.state).where(and_(records.c.kind == kind, records.c.record_id > after))
    if not include_deleted:
        q = q.where(records.c.deleted.is_(False))
    if conflicted_only:
        q = q.where(records.c.conflicted.is_(True))
    return [_state(kind, rid, raw) for rid, raw in conn.execute(q.order_by(records.c.record_id).limit(limit))]


def people_by_id_number(conn: Connection, id_numbers: Sequence[str]) -> dict[str, RecordState]:
    """The live person held under each ID number (the first by record id where legacy duplicates hold
    one number twice); numbers held by no live person are absent. Probes ix_records_id_number."""
    out: dict[str, RecordState] = {}
    wanted = sorted(set(id_numbers))
    for i in range(0, len(wanted), 500):
        q = (select(records.c.id_number, records.c.record_id, records.c.state)
             .where(and_(records.c.kind == "person", records.c.id_number.in_(wanted[i:i + 500]),
                         records.c.deleted.is_(False)))
             .order_by(records.c.id_number, records.c.record_id))
        for id_number, rid, raw in conn.execute(q):
            if id_number not in out:
                out[id_number] = _state("person", rid, raw)
    return out


def flow_counts(conn: Connection, kind: str) -> list[tuple[str | None, str | None, str | None, int]]:
    """(household, residence, move month, live records) groups, from the projection columns."""
    month = func.substr(records.c.moved_on, 1, 7)
    q = (select(records.c.household, records.c.residence, month, func.count())
         .where(and_(records.c.kind == kind, records.c.deleted.is_(False)))
         .group_by(records.c.household, records.c.residence, month))
    return [(h, r, m, int(n)) for h, r, m, n in conn.execute(q)]


def count(conn: Connection, *, conflicted_only: bool = False) -> int:
    """Live (or live and conflicted) records, counted (the counters' starting values)."""
    cond: ColumnElement[bool] = records.c.deleted.is_(False)
    if conflicted_only:
        cond = and_(cond, records.c.conflicted.is_(True))
    return int(conn.execute(select(func.count()).select_from(records).where(cond)).scalar() or 0)
