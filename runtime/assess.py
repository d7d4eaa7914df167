"""The assessment (双向考核) and flow figures a node or the national hub serves.

How this works: the period is checked here (ISO dates, from <= to); the store runs the
GROUP BY queries of store/assess.py on one connection; core.assess folds the rows into
one document per province. On the national hub that is every province, from the national
database; on a node it is its own province and its counterparts (the provinces its
records and requests involve), as far as its own store knows them. Delivery delays are
SQL over this replica's delay histograms for the period (store.delays, read by
store.assess.delivery_delays), kept as it received the changes: on
the national hub, how long each province's changes took until the national database
received them; on a node, how long its counterparts' changes took to reach it (a node
never receives its own changes back, so its own province has none there). Quarantined
changes are counted per party charged with them, and per claimed origin, for the period.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Callable, Mapping

from core import assess
from core.errors import ValidationError
from core.provinces import DEFAULT_REGIONS, PROVINCES
from store import assess as q
from store.store import Store

if TYPE_CHECKING:  # a type only: runtime reaches the database through store/ (its connection type, too)
    from store.db import Connection

CHINA = dt.timezone(dt.timedelta(hours=8))  # one time zone: days of received_ms are counted in it


def period(from_date: str, to_date: str) -> tuple[str | None, str | None]:
    out: list[str | None] = []
    for name, text in (("from", from_date), ("to", to_date)):
        if not text:
            out.append(None)
            continue
        try:
            out.append(dt.date.fromisoformat(text).isoformat())
        except ValueError:
            raise ValidationError(name, f"{text!r} is not a date (YYYY-MM-DD)") from None
    if out[0] and out[1] and out[0] > out[1]:
        raise ValidationError("from", f"{out[0]} is after --to {out[1]}")
    return out[0], out[1]


def _ms(day: str | None, *, next_day: bool = False) -> int | None:
    if day is None:
        return None
    d = dt.date.fromisoformat(day) + dt.timedelta(days=1 if next_day else 0)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=CHINA).timestamp() * 1000)


def _region(code: str) -> str:
    return next((r for r, codes in DEFAULT_REGIONS.items() if code in codes), "")


def _short(code: str) -> str:
    return PROVINCES[code].rsplit(" ", 1)[-1]


def assessment(store: Store, *, own: str | None, from_date: str = "", to_date: str = "", today: dt.date,
               delivery: Mapping[str, tuple[float | None, float | None]] | None = None,
               extra: Callable[..., dict] | None = None) -> dict[str, object]:
    """The figures for every province this replica can assess (``own`` = a node's province,
    None on the national hub). ``delivery``: province -> (p50 s, p95 s), for provinces the
    log has no delivery figure for in the period (None: none)."""
    start, end = period(from_date, to_date)
    with store.engine.connect() as conn:
        pairs = q.migrant_pairs(conn)
        figures, days = q.request_figures(conn, start, end, today.isoformat())
        rows: dict[str, Any] = {
            "pairs": pairs,
            "requests": figures,
            "answer_days": days,
            "quarantined": q.quarantined_by_party(conn, _ms(start), _ms(end, next_day=True)),
            "claiming": q.quarantined_by_origin(conn, _ms(start), _ms(end, next_day=True)),
            "delivered": q.delivery_delays(conn, start, end),
        }
        if extra is not None:
            rows.update(extra(conn, start, end))
        scope = set(PROVINCES)
        if own is not None:
            scope = {own} | {p for h, r, _ in pairs for p in (h, r)} | q.request_counterparts(conn, own)
    codes = sorted(c for c in scope if c in PROVINCES)
    docs = {c: assess.blank(c, _short(c), _region(c)) for c in codes}
    assess.fold(docs, delivery=delivery, **rows)
    return {"identity": store.owner, "scope": "national" if own is None else own, "from": start, "to": end,
            "today": today.isoformat(), "provinces": [docs[c] for c in codes]}


def flows(store: Store, from_date: str = "", to_date: str = "") -> dict[str, object]:
    """The household x residence matrix of migrants who moved in within the period."""
    start, end = period(from_date, to_date)
    with store.engine.connect() as conn:
        pairs = q.migrant_pairs(conn, moved_from=start, moved_to=end)
    return {"identity": store.owner, "from": start, "to": end,
            "flows": [{"household": h, "residence": r, "migrants": n} for h, r, n in sorted(pairs)]}


def request_counts(store: Store, province: str, today: dt.date) -> dict[str, int]:
    with store.engine.connect() as conn:
        return q.open_requests(conn, province, today.isoformat())


def kind_figures(conn: Connection, start: str | None, end: str | None) -> dict[str, list]:
    """Rows from the services and certificates projections."""
    return {"served": q.served_migrants(conn, start, end), "verified": q.certificate_checks(conn, start, end),
            "issued": q.certificates_issued(conn, start, end), "revoked": q.certificates_revoked(conn, start, end)}
