"""The SQL behind `assess`, `report flows` and the request counts in `status`.

How this works: every figure is a GROUP BY over a projection (records' household /
residence / moved_on columns, the requests, services and certificates side tables,
the quarantine, the delivery-delay histograms), so each query returns at most a
few rows per province whatever the size of the store, and nothing loads a record state
or a change body. Functions take an open
connection and plain ISO dates (YYYY-MM-DD, both ends included, None = open); the
caller turns the rows into figures.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Float, and_, case, cast, func, literal, or_, select, true
from sqlalchemy import ColumnElement, Connection

from core.delays import spans
from store import tallies
from store.schema import certificates, delay_counts, quarantine, records, requests, services

Rows = list[tuple[Any, ...]]


def _between(column: ColumnElement[Any], start: str | None, end: str | None) -> Any:
    cond: list[ColumnElement[bool]] = [column.is_not(None)] if start or end else []
    if start:
        cond.append(column >= start)
    if end:
        cond.append(column <= end)
    return and_(true(), *cond)


def migrant_pairs(conn: Connection, *, moved_from: str | None = None, moved_to: str | None = None) -> Rows:
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


def _received(column: ColumnElement[Any], start_ms: int | None, end_ms: int | None) -> list[Any]:
    cond = []
    if start_ms is not None:
        cond.append(column >= start_ms)
    if end_ms is not None:
        cond.append(column < end_ms)
    return cond


def quarantined_by_origin(conn: Connection, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
    """Changes refused here, per claimed origin, received within [start_ms, end_ms)."""
    cond = [quarantine.c.origin.is_not(None), *_received(quarantine.c.received_ms, start_ms, end_ms)]
    q = select(quarantine.c.origin, func.count()).where(and_(*cond)).group_by(quarantine.c.origin)
    return {origin: int(n) for origin, n in conn.execute(q)}


def quarantined_by_party(conn: Connection, start_ms: int | None, end_ms: int | None) -> dict[str, int]:
    """Changes refused here, per party charged with them (the signer when the seal verified, else
    the peer that sent them; rows from before 0006_quarantine_charge: the claimed origin),
    received within [start_ms, end_ms)."""
    party = func.coalesce(quarantine.c.charged, quarantine.c.origin)
    q = (select(party, func.count()).where(and_(party.is_not(None), *_received(quarantine.c.received_ms, start_ms,
                                                                                 end_ms)))
         .group_by(party))
    return {who: int(n) for who, n in conn.execute(q)}


def delivery_delays(conn: Connection, start: str | None, end: str | None) -> dict[str, tuple[int, float, float]]:
    """Per origin province: (changes, median delay ms, p95 delay ms) of the changes this replica
    received from peers on the China-time days from ``start`` to ``end`` (ISO dates, both
    included, None = open), delay = received_ms - at_ms (the author's hybrid-logical write time;
    a negative delay, from a clock ahead of ours, counts as 0).

    From the histograms of store.delays, never the log: the period's counts per (origin,
    bucket), from its whole years', whole months' and remaining days' rows
    (core.delays.spans), a running sum over each origin's buckets in order (one window), and
    the buckets
    holding the median ranks (n+1)/2 and (n+2)/2 (averaged: the middle two when n is even) and
    the p95 nearest rank ceil(95 n / 100) = (95 n + 99) / 100, in integer arithmetic. Each
    figure is the mean delay of its bucket (core.delays: within 1/8 of the exact value, exact
    when the bucket holds one distinct delay). Reads at most ~60 days', ~22 months' and the
    period's years' rows per origin and bucket, whatever the number of changes."""
    d = delay_counts.c
    ranges = spans(dt.date.fromisoformat(start) if start else None, dt.date.fromisoformat(end) if end else None)
    if not ranges:
        return {}
    cond = or_(*(and_(d.level == level, d.unit >= lo, d.unit <= hi) for level, lo, hi in ranges))
    agg = (select(d.origin.label("origin"), d.bucket.label("bucket"),
                  cast(func.sum(d.changes), BigInteger).label("n"), cast(func.sum(d.total_ms), BigInteger).label("s"))
           .where(cond).group_by(d.origin, d.bucket).subquery())
    a = agg.c
    cum = select(a.origin, a.n, a.s,
                 cast(func.sum(a.n).over(partition_by=a.origin, order_by=a.bucket, rows=(None, 0)),
                      BigInteger).label("upto"),
                 cast(func.sum(a.n).over(partition_by=a.origin), BigInteger).label("total")).subquery()
    r = cum.c

    def at(rank: ColumnElement[Any]) -> ColumnElement[Any]:
        return case((and_(r.upto - r.n < rank, rank <= r.upto), cast(r.s, Float) / r.n))

    lo, hi, p95 = (r.total + 1) // 2, (r.total + 2) // 2, (r.total * 95 + 99) // 100
    q = select(r.origin, func.max(r.total), func.max(at(lo)), func.max(at(hi)), func.max(at(p95))).group_by(r.origin)
    return {origin: (int(n), (float(m1) + float(m2)) / 2, float(top)) for origin, n, m1, m2, top in conn.execute(q)}


def _overdue(today: str) -> Any:
    """Not answered by the due date: answered late, or unanswered past the due date (as of the
    day it was closed, if the sender closed it, else today)."""
    r = requests.c
    return or_(and_(r.answered_on.is_not(None), r.answered_on > r.due_on),
               and_(r.answered_on.is_(None), r.due_on < func.coalesce(r.closed_on, literal(today))))


def request_figures(conn: Connection, start: str | None, end: str | None, today: str) -> tuple[Rows, Rows]:
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


def open_requests(conn: Connection, province: str, today: str) -> dict[str, int]:
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


def request_counterparts(conn: Connection, province: str) -> set[str]:
    """Provinces that sent requests to ``province`` or received them from it."""
    r = requests.c
    q = select(r.from_p, r.to_p).where(or_(r.from_p == province, r.to_p == province)).distinct()
    return {p for row in conn.execute(q) for p in row}


def served_migrants(conn: Connection, start: str | None, end: str | None) -> Rows:
    """(residence province, migrants living there with at least one service given in the period),
    by the provinces the service records carry (the person's, kept current on a move)."""
    s = services.c
    q = (select(s.residence, func.count(func.distinct(s.person_id)))
         .where(and_(s.household.is_not(None), s.residence.is_not(None), s.household != s.residence,
                     _between(s.given_on, start, end)))
         .group_by(s.residence))
    return [(p, int(n)) for p, n in conn.execute(q)]


def certificate_checks(conn: Connection, start: str | None, end: str | None) -> Rows:
    """(province, certificates it verified in the period: services of type certificate_check it gave)."""
    s = services.c
    q = (select(s.provider, func.count()).where(and_(s.type == "certificate_check", _between(s.given_on, start, end)))
         .group_by(s.provider))
    return [(p, int(n)) for p, n in conn.execute(q)]


def certificates_issued(conn: Connection, start: str | None, end: str | None) -> Rows:
    c = certificates.c
    q = select(c.issuer, func.count()).where(_between(c.issued_on, start, end)).group_by(c.issuer)
    return [(p, int(n)) for p, n in conn.execute(q)]


def certificates_revoked(conn: Connection, start: str | None, end: str | None) -> Rows:
    c = certificates.c
    q = (select(c.issuer, func.count()).where(and_(c.status == "revoked", _between(c.status_on, start, end)))
         .group_by(c.issuer))
    return [(p, int(n)) for p, n in conn.execute(q)]
