"""The SQL behind `assess`, `report flows` and the request counts in `status`.

How this works: every figure is a GROUP BY over a projection (records' household /
residence / moved_on columns, the requests, services and certificates side tables,
the quarantine), so each query returns at most a few rows per province whatever the
size of the store, and nothing loads a record state. Functions take an open
connection and plain ISO dates (YYYY-MM-DD, both ends included, None = open); the
caller turns the rows into figures.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, true

from store import tallies
from store.schema import certificates, quarantine, records, requests, services

Rows = list[tuple[Any, ...]]


def _between(column, start: str | None, end: str | None) -> Any:  # type: ignore[no-untyped-def]
    cond = [column.is_not(None)] if start or end else []
    if start:
        cond.append(column >= start)
    if end:
        cond.append(column <= end)
    return and_(true(), *cond)


def migrant_pairs(conn, *, moved_from: str | None = None, moved_to: str | None = None) -> Rows:  # type: ignore[no-untyped-def]
    """(household, residence, live persons) for persons living outside their household province;
    with a period, only those who moved in within it (``moved_in_on``). Without one, from the
    running totals (store.tallies); with one, a scan of the covering index."""
    if moved_from is None and moved_to is None:
        return tallies.pairs(conn)
    q = (select(records.c.household, records.c.residence, func.count())
         .where(and_(records.c.kind == "person", records.c.deleted.is_(False),
                     records.c.household.is_not(None), records.c.residence.is_not(None),
                     records.c.household != records.c.residence,
                     _between(records.c.moved_on, moved_from, moved_to)))
         .group_by(records.c.household, records.c.residence))
    return [tuple(r) for r in conn.execute(q)]


def quarantined_by_origin(conn, start_ms: int | None, end_ms: int | None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Changes refused here, per claimed origin, received within [start_ms, end_ms)."""
    cond = [quarantine.c.origin.is_not(None)]
    if start_ms is not None:
        cond.append(quarantine.c.received_ms >= start_ms)
    if end_ms is not None:
        cond.append(quarantine.c.received_ms < end_ms)
    q = select(quarantine.c.origin, func.count()).where(and_(*cond)).group_by(quarantine.c.origin)
    return {origin: int(n) for origin, n in conn.execute(q)}


def _overdue(today: str) -> Any:
    """Not answered by the due date: answered late, or unanswered past the due date (as of the
    day it was closed, if the sender closed it, else today)."""
    r = requests.c
    return or_(and_(r.answered_on.is_not(None), r.answered_on > r.due_on),
               and_(r.answered_on.is_(None), r.due_on < func.coalesce(r.closed_on, literal(today))))


def request_figures(conn, start: str | None, end: str | None, today: str) -> tuple[Rows, Rows]:  # type: ignore[no-untyped-def]
    """For requests sent in the period, in one scan: (to province, to side, received, answered on
    time, overdue) and the histogram the medians come from (to province, to side, days to
    answer, requests)."""
    r = requests.c
    on_time = and_(r.answered_on.is_not(None), r.answered_on <= r.due_on)
    q = (select(r.to_p, r.to_side, r.answer_days, func.count(),
                func.sum(case((on_time, 1), else_=0)), func.sum(case((_overdue(today), 1), else_=0)))
         .where(_between(r.sent_on, start, end)).group_by(r.to_p, r.to_side, r.answer_days))
    totals: dict[tuple[str, str], list[int]] = {}
    days: Rows = []
    for p, side, d, n, ok, late in conn.execute(q):
        t = totals.setdefault((p, side), [0, 0, 0])
        t[0] += int(n)
        t[1] += int(ok or 0)
        t[2] += int(late or 0)
        if d is not None:
            days.append((p, side, int(d), int(n)))
    return [(p, side, *t) for (p, side), t in totals.items()], days


def open_requests(conn, province: str, today: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Open and overdue (open past the due date) requests to and from ``province``."""
    r = requests.c
    late = r.due_on < today
    out = {}
    for way, column in (("received", r.to_p), ("sent", r.from_p)):
        q = select(func.count(), func.sum(case((late, 1), else_=0))).where(
            and_(column == province, r.state == "open"))
        n, overdue = conn.execute(q).one()
        out[f"{way}_open"], out[f"{way}_overdue"] = int(n or 0), int(overdue or 0)
    return out


def request_counterparts(conn, province: str) -> set[str]:  # type: ignore[no-untyped-def]
    """Provinces that sent requests to ``province`` or received them from it."""
    r = requests.c
    q = select(r.from_p, r.to_p).where(or_(r.from_p == province, r.to_p == province)).distinct()
    return {p for row in conn.execute(q) for p in row}


def served_migrants(conn, start: str | None, end: str | None) -> Rows:  # type: ignore[no-untyped-def]
    """(residence province, migrants living there with at least one service given in the period),
    by the provinces the service records carry (the person's, kept current on a move)."""
    s = services.c
    q = (select(s.residence, func.count(func.distinct(s.person_id)))
         .where(and_(s.household.is_not(None), s.residence.is_not(None), s.household != s.residence,
                     _between(s.given_on, start, end)))
         .group_by(s.residence))
    return [(p, int(n)) for p, n in conn.execute(q)]


def certificate_checks(conn, start: str | None, end: str | None) -> Rows:  # type: ignore[no-untyped-def]
    """(province, certificates it verified in the period: services of type certificate_check it gave)."""
    s = services.c
    q = (select(s.provider, func.count()).where(and_(s.type == "certificate_check", _between(s.given_on, start, end)))
         .group_by(s.provider))
    return [(p, int(n)) for p, n in conn.execute(q)]


def certificates_issued(conn, start: str | None, end: str | None) -> Rows:  # type: ignore[no-untyped-def]
    c = certificates.c
    q = select(c.issuer, func.count()).where(_between(c.issued_on, start, end)).group_by(c.issuer)
    return [(p, int(n)) for p, n in conn.execute(q)]


def certificates_revoked(conn, start: str | None, end: str | None) -> Rows:  # type: ignore[no-untyped-def]
    c = certificates.c
    q = (select(c.issuer, func.count()).where(and_(c.status == "revoked", _between(c.status_on, start, end)))
         .group_by(c.issuer))
    return [(p, int(n)) for p, n in conn.execute(q)]
