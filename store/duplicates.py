"""Likely duplicate people in a store, found by SQL over the identity projection columns.

How this works: two GROUP BYs over ``records`` (live persons only), each answered from an
index (schema ``ix_records_id_number``, ``ix_records_same_person``) and never by loading
records into Python:

* the same 18-character ``id_number`` under two record ids: each further record of a group
  is paired with the group's first (smallest) record id;
* the same name, birth date and sex with different ID numbers: each record of the group whose
  ID number differs from the group's first record's is paired with that first record.

A group of n records gives n-1 pairs, so the output grows with the duplicates, not the store.
Pairs come in (reason, first, second) order, so a caller can page with ``after``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Select, and_, func, select
from sqlalchemy import ColumnElement, Connection

from store.schema import records

SAME_ID = "same_id_number"
SAME_PERSON = "same_name_birth_date_sex"


@dataclass(frozen=True, slots=True)
class Pair:
    first: str  # person_id
    second: str
    why: str  # SAME_ID or SAME_PERSON


def _live() -> ColumnElement[bool]:
    return and_(records.c.kind == "person", records.c.deleted.is_(False))


def same_id_number_query() -> Select:
    """(first, second) person ids: records that share an ID number with a record whose id sorts first."""
    groups = (select(records.c.id_number.label("id_number"), func.min(records.c.record_id).label("first"))
              .where(and_(_live(), records.c.id_number.is_not(None)))
              .group_by(records.c.id_number).having(func.count() > 1).subquery())
    q = (select(groups.c.first, records.c.record_id)
         .join_from(groups, records, and_(records.c.kind == "person", records.c.id_number == groups.c.id_number))
         .where(and_(records.c.deleted.is_(False), records.c.record_id != groups.c.first))
         .order_by(groups.c.first, records.c.record_id))
    return q


def same_name_birth_sex_query() -> Select:
    """(first, second) person ids: records with the name, birth date and sex of a group's first
    record but another ID number."""
    keys = (records.c.person_name, records.c.birth_date, records.c.sex)
    groups = (select(*keys, func.min(records.c.record_id).label("first"))
              .where(and_(_live(), *(k.is_not(None) for k in keys)))
              .group_by(*keys).having(func.count(records.c.id_number.distinct()) > 1).subquery())
    head = records.alias("head")  # the group's first record, for its ID number
    q = (select(groups.c.first, records.c.record_id)
         .join_from(groups, head, and_(head.c.kind == "person", head.c.record_id == groups.c.first))
         .join(records, and_(records.c.kind == "person", records.c.person_name == groups.c.person_name,
                             records.c.birth_date == groups.c.birth_date, records.c.sex == groups.c.sex))
         .where(and_(records.c.deleted.is_(False), records.c.record_id != groups.c.first,
                     records.c.id_number.is_not(None), head.c.id_number.is_not(None),
                     records.c.id_number != head.c.id_number))
         .order_by(groups.c.first, records.c.record_id))
    return q


def same_id_number(conn: Connection) -> Iterator[Pair]:
    for first, second in conn.execute(same_id_number_query()):
        yield Pair(first, second, SAME_ID)


def same_name_birth_sex(conn: Connection) -> Iterator[Pair]:
    for first, second in conn.execute(same_name_birth_sex_query()):
        yield Pair(first, second, SAME_PERSON)
