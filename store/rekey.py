"""Person keys for records made before them (issue 12): the one-time re-key of a store.

How this works. Migration 0009 marks a store that holds person records as
``person_keys = pending`` (meta). Re-keying needs the federation secret, which
Alembic does not have, so the node and the national hub run ``run`` when they open
their store with the secret (``Store.open(..., person_secret=...)``), in one
transaction, and log what it did; without the secret (tools, a regional hub)
nothing happens and the mark stays. A legacy record (a uuid id) is re-keyed to its
ID's key when its id_number is valid, its birth date and sex agree with the ID,
and no other record holds the same ID (those are left for ``person link`` and
listed by ``yipanqi duplicates``). Its row keeps its state (every version, every
conflict) under the new id, and the person_id references of the certificates,
services and requests held here are rewritten with it. Every replica applies the
same rule to the same records, so they agree; the signed change log keeps the old
ids (its bytes are signed) and is not rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, insert, select, update
from sqlalchemy import Connection

from core import canonical
from core.idnumber import id_birth_date, id_sex
from core.personkey import check_record_id, is_person_key, is_random_key, person_key, valid_id_number
from core.record import RecordState, Version
from store import projections
from store.schema import meta, records

KEY = "person_keys"
REFERRING = ("certificate", "service", "request")


@dataclass
class Report:
    rekeyed: int = 0
    no_valid_id: int = 0
    disagreeing: int = 0  # birth date or sex not the ID's
    shared: int = 0  # another record holds the same ID (or its key is taken): left for `person link`
    references: int = 0

    def __str__(self) -> str:
        return (f"re-keyed {self.rekeyed} person records to their ID's key; left {self.no_valid_id} without a "
                f"valid ID, {self.disagreeing} whose birth date or sex disagree with their ID and {self.shared} "
                f"sharing an ID with another record (see `yipanqi duplicates`, `person link`); rewrote "
                f"{self.references} references in certificates, services and requests")


def mark_pending(conn: Connection) -> None:
    """Called by migration 0009: a store with person records has records to re-key."""
    if conn.execute(select(records.c.record_id).where(records.c.kind == "person").limit(1)).first() is not None:
        conn.execute(insert(meta).values(key=KEY, value="pending"))


def pending(conn: Connection) -> bool:
    return conn.execute(select(meta.c.value).where(meta.c.key == KEY)).scalar() == "pending"


def _legacy(record_id: str) -> bool:
    return not (is_person_key(record_id) or is_random_key(record_id))


def _agrees(values: dict, id_number: str) -> bool:
    return values.get("birth_date") == id_birth_date(id_number).isoformat() and values.get("sex") == id_sex(id_number)


def run(conn: Connection, secret: bytes) -> Report:
    """Re-key this store's legacy person records (see the module doc); marks the store done."""
    report = Report()
    by_id: dict[str, list[str]] = {}
    people: dict[str, tuple[object, object, object]] = {}
    taken: set[str] = set()
    for rid, raw in conn.execute(select(records.c.record_id, records.c.state).where(records.c.kind == "person")):
        if not _legacy(rid):
            taken.add(rid)
            continue
        state = RecordState.from_json("person", rid, canonical.loads(bytes(raw)))
        values = state.values()
        id_number = valid_id_number(values.get("id_number"))
        if id_number is None:
            report.no_valid_id += 1
        elif not _agrees(values, id_number):
            report.disagreeing += 1
        else:
            by_id.setdefault(id_number, []).append(rid)
            people[rid] = (values.get("name"), values.get("birth_date"), values.get("sex"))
    mapping: dict[str, str] = {}
    for id_number, rids in by_id.items():
        key = person_key(secret, id_number)
        if key in taken or len({people[r] for r in rids}) > 1:
            report.shared += len(rids)  # records of one ID that disagree on name, birth date or sex
            continue
        # One record per ID takes the key (the same one at every replica: the least id); its agreeing
        # duplicates are left for `person link`, which merges them by signed changes.
        mapping[min(rids)] = key
        report.shared += len(rids) - 1
    for old, new in mapping.items():
        conn.execute(update(records).where(and_(records.c.kind == "person", records.c.record_id == old))
                     .values(record_id=new))
    report.rekeyed = len(mapping)
    if mapping:
        report.references = _rewrite_references(conn, mapping)
    conn.execute(update(meta).where(meta.c.key == KEY).values(value="done"))
    return report


def _rewrite_references(conn: Connection, mapping: dict[str, str]) -> int:
    """Point person_id fields (every version of them) at the new keys; refresh the side tables."""
    changed: list[RecordState] = []
    for kind in REFERRING:
        for rid, raw in conn.execute(select(records.c.record_id, records.c.state).where(records.c.kind == kind)):
            state = RecordState.from_json(kind, rid, canonical.loads(bytes(raw)))
            versions = state.fields.get("person_id", ())
            if not any(isinstance(v.value, str) and _norm(v.value) in mapping for v in versions):
                continue
            fields = dict(state.fields)
            fields["person_id"] = tuple(Version(mapping.get(_norm(v.value), v.value) if isinstance(v.value, str)
                                                else v.value, v.clock, v.at) for v in versions)
            new = RecordState(kind, rid, fields)
            conn.execute(update(records).where(and_(records.c.kind == kind, records.c.record_id == rid))
                         .values(state=new.to_bytes()))
            changed.append(new)
    projections.save(conn, changed)
    return len(changed)


def _norm(value: str) -> str:
    try:
        return check_record_id("person_id", value)
    except Exception:
        return value
