"""Delivery-delay histograms (store.delays, 0008_delay_counts) on SQLite and PostgreSQL (``db_url``).

The median and p95 ``assess`` reads from the counters are checked against the exact nearest-rank
figures of the raw delays (within the bucket precision core.delays states); the counters are
kept by a node and the national hub as they ingest and never by a regional hub; and the 0008
upgrade of a populated 0007 store fills them from the log exactly as the store would have.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from core.delays import SUB, bucket, day_number, units
from runtime.intake import check
from store import assess as q
from store import delays
from store.db import HEAD, MIGRATIONS, current_revision, migrate
from store.schema import delay_counts
from store.store import Store
from tests.contract.test_request_store import _request, _set
from tests.support.pki import PKI

DAY = dt.date(2026, 3, 10)
B = (day_number(DAY) * 86_400_000) - 8 * 3_600_000  # 2026-03-10 00:00 in China time, in UTC ms



def _exact(values: list[int]) -> tuple[int, float, int]:
    v = sorted(max(x, 0) for x in values)
    n = len(v)
    return n, (v[(n + 1) // 2 - 1] + v[(n + 2) // 2 - 1]) / 2, v[(95 * n + 99) // 100 - 1]


def _rows(s: Store) -> list[tuple[int, int, str, int, int, int]]:
    with s.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(delay_counts)))  # type: ignore[misc]


def _china_midnight_ms(day: dt.date) -> int:
    return day_number(day) * 86_400_000 - 8 * 3_600_000


def test_median_and_p95_are_within_the_stated_precision_of_the_exact_figures(db_url: str,
                                                                           opened: list[Store]) -> None:
    """Random delays (log-normal, a few negative, a long tail) on days across month and year ends,
    from several origins, in batches as the store adds them: for single days, ranges that cut
    months and years, whole months and years, open ends and the whole history, every origin's
    count is exact and its median and p95 are within 1/SUB of the exact nearest-rank figures."""
    s = Store.open(db_url, owner="hub-national", index_routes=True, hold_records=True)
    opened.append(s)
    rng = random.Random(15)
    days = [dt.date(2025, 11, 30), dt.date(2025, 12, 1), dt.date(2025, 12, 31), dt.date(2026, 1, 1),
            dt.date(2026, 2, 14), dt.date(2026, 12, 31), dt.date(2027, 3, 1)]
    got: dict[tuple[dt.date, str], list[int]] = {}
    for day in days:
        for batch in range(4):
            received = _china_midnight_ms(day) + batch * 6 * 3_600_000 + rng.randrange(3_600_000)
            items = []
            for _ in range(rng.randrange(1, 150)):
                origin = f"province-{rng.choice(['11', '44', '65'])}"
                delay = int(rng.lognormvariate(7, 2)) if rng.random() > 0.03 else -rng.randrange(5000)
                items.append((origin, received - delay))
                got.setdefault((day, origin), []).append(delay)
            items.append(("hub-bohai", received - 5))  # not a province: never counted
            with s.engine.begin() as conn:
                delays.add(conn, items, received)
    D = dt.date
    periods: list[tuple[D | None, D | None]] = [(d, d) for d in days]
    periods += [(D(2025, 11, 30), D(2025, 12, 31)), (D(2025, 12, 1), D(2026, 1, 31)), (D(2025, 12, 2), D(2026, 12, 31)),
                (D(2026, 1, 1), D(2026, 12, 31)), (D(2025, 1, 1), D(2027, 12, 31)), (D(2025, 12, 31), D(2027, 2, 28)),
                (None, D(2026, 1, 1)), (D(2026, 1, 2), None), (None, None)]
    with s.engine.connect() as conn:
        for start, end in periods:
            figures = q.delivery_delays(conn, start and start.isoformat(), end and end.isoformat())
            for origin in ("province-11", "province-44", "province-65"):
                inside = [x for d in days if (start is None or start <= d) and (end is None or d <= end)
                          for x in got.get((d, origin), [])]
                if not inside:
                    assert origin not in figures
                    continue
                n, p50, p95 = figures[origin]
                want_n, want_p50, want_p95 = _exact(inside)
                assert n == want_n, (start, end, origin)
                assert abs(p50 - want_p50) <= want_p50 / SUB, (start, end, origin, p50, want_p50)
                assert abs(p95 - want_p95) <= want_p95 / SUB, (start, end, origin, p95, want_p95)
        assert q.delivery_delays(conn, "2027-03-02", None) == {}
        assert q.delivery_delays(conn, "2026-01-02", "2026-02-13") == {}


def test_one_row_per_key_and_batches_add_up(db_url: str, opened: list[Store]) -> None:
    """500 changes with one delay are one row; a second batch adds to it (an upsert, not a new row);
    the day is the China-time day of receipt (00:00 +08:00 starts a new one)."""
    s = Store.open(db_url, owner="province-44")
    opened.append(s)
    with s.engine.begin() as conn:
        delays.add(conn, [("province-45", B + 1000 - 1500)] * 500, B + 1000)
        delays.add(conn, [("province-45", B + 2000 - 1500)] * 3 + [("province-45", B + 2000 + 70)], B + 2000)
        delays.add(conn, [("province-45", B - 1 - 1500)], B - 1)  # the last ms of the day before
    day, b = day_number(DAY), bucket(1500)
    (_, d), (_, month), (_, year) = units(day)
    assert _rows(s) == [(0, day - 1, "province-45", b, 1, 1500), (0, day, "province-45", 0, 1, 0),
                        (0, day, "province-45", b, 503, 503 * 1500),  # and the month's and year's, summed:
                        (1, month, "province-45", 0, 1, 0), (1, month, "province-45", b, 504, 504 * 1500),
                        (2, year, "province-45", 0, 1, 0), (2, year, "province-45", b, 504, 504 * 1500)]


def _downgrade(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007_log_received")


def _log_indexes(engine: sa.Engine) -> set[str]:
    """Index names on ``log``, read from the catalogue (SQLAlchemy does not reflect expression indexes on SQLite)."""
    sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'log'"
           if engine.dialect.name == "sqlite" else "SELECT indexname FROM pg_indexes WHERE tablename = 'log'")
    with engine.connect() as conn:
        return {name for (name,) in conn.exec_driver_sql(sql)}


def _arrive(pki: PKI, author: Store, at: Store, code: str, written: int, received: int) -> None:
    author.write_local("request", str(uuid.uuid4()), _set(_request(from_province=code, to_province="44",
                                                                   to_side="residence")),
                       operator=None, now_ms=written, seal=pki.sealer(f"province-{code}"))
    env = author.outbox(author.last_seq() - 1)[-1].envelope
    accepted, refused = check([env], pki.verifier(), peer="hub-pearl", peer_may_forward=True, for_province="44")
    assert len(accepted) == 1 and not refused
    at.ingest(accepted, [], via="hub-pearl", now_ms=received)


def test_kept_on_ingest_by_replicas_that_assess_and_upgraded_from_0007(db_url: str, pki: PKI,
                                                                      opened: list[Store]) -> None:
    """A node's counters follow what it ingests (not its own writes); a regional hub, which holds
    no records and never assesses, keeps none. Taken back to 0007 (the counters dropped, the log
    index back) and upgraded again, the node's store refills its counters from the log to exactly
    the rows it had kept, and the assessment gives the same figures."""
    node = Store.open(db_url, owner="province-44")
    opened.append(node)
    author = Store.open("sqlite://", owner="province-45")
    opened.append(author)
    for i, delay in enumerate([800, 1200, 1200, 45_000, -300, 3000]):
        written = B + i * 600_000 + (86_400_000 if i > 3 else 0)
        _arrive(pki, author, node, "45", written, written + delay)
    # 44's own write, after what it received (its clock has seen 45's times: v2 holds no own delta
    # stamped a day ahead of the clock it is written at).
    node.write_local("request", str(uuid.uuid4()), _set(_request(to_province="45")), operator=None,
                     now_ms=B + 86_400_000 + 3_600_000, seal=pki.sealer("province-44"))
    kept = _rows(node)
    day = day_number(DAY)
    assert sum(r[4] for r in kept if r[0] == 0) == 6 and {r[1] for r in kept if r[0] == 0} == {day, day + 1}
    with node.engine.connect() as conn:
        assert q.delivery_delays(conn, DAY.isoformat(), DAY.isoformat()) == {"province-45": (4, 1200, 45_000)}
        before = q.delivery_delays(conn, None, None)

    _downgrade(node.engine)  # back to 0007, as a store of the previous release is
    assert current_revision(node.engine) == "0007_log_received"
    assert "delay_counts" not in sa.inspect(node.engine).get_table_names()
    assert "ix_log_delay" in _log_indexes(node.engine)
    migrate(node.engine)
    assert current_revision(node.engine) == HEAD
    assert "ix_log_delay" not in _log_indexes(node.engine)
    assert _rows(node) == kept
    with node.engine.connect() as conn:
        assert q.delivery_delays(conn, None, None) == before

    # A regional hub: the same ingest, no counters, and its upgrade from 0007 fills none.
    hub = Store.open("sqlite://", owner="hub-pearl", index_routes=True, hold_records=False)
    opened.append(hub)
    _arrive(pki, author, hub, "45", B + 9_000_000, B + 9_001_000)
    assert hub.last_lsn() == 1  # logged, to forward
    assert _rows(hub) == []
    _downgrade(hub.engine)
    migrate(hub.engine)
    assert _rows(hub) == []
