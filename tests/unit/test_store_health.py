"""store.health: database outages become StoreUnavailable, are noted once, and end on the
right evidence (a committed write; any statement when the database was unreachable)."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

from core.errors import StoreUnavailable, Unavailable
from store.health import Health
from store.store import Store

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000

    def __call__(self) -> int:
        return self.ms


def open_store(tmp_path: Path, clock: Clock) -> tuple[Store, list[tuple[str, object]]]:
    events: list[tuple[str, object]] = []
    health = Health(clock)
    health.listener = lambda what, report: events.append((what, report))
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}?timeout=0.1", owner="province-44", health=health)
    return store, events


def test_a_locked_file_is_one_outage_until_a_write_commits(tmp_path: Path) -> None:
    clock = Clock()
    store, events = open_store(tmp_path, clock)
    lock = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(3):
            clock.ms += 10
            with pytest.raises(StoreUnavailable, match="locked") as err:
                store.probe()
            assert isinstance(err.value, Unavailable) and not err.value.unreachable
        report = store.health.report()
        assert (report.ok, report.down_since_ms, report.last_error, report.outages) == \
            (False, 1_010, "database is locked", 1)
        store.last_seq()  # reads work on a locked WAL file, and do not end the outage
        assert not store.health.ok
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    store.probe()
    report = store.health.report()
    assert report.ok and report.down_since_ms is None and report.last_error is None and report.outages == 1
    assert [e for e, _ in events] == ["down", "up"]  # once per outage, however many calls failed
    store.close()


def test_an_unreachable_server_is_an_outage_that_any_statement_ends() -> None:
    health = Health(Clock())
    health.failed(StoreUnavailable("connection refused", unreachable=True))
    assert not health.ok
    health.reached()
    assert health.ok
    health.failed(StoreUnavailable("database is locked"))
    health.reached()
    assert not health.ok  # a read is no proof that writes work again
    health.wrote()
    assert health.ok and health.report().outages == 2


def test_opening_a_server_that_is_not_there_raises_store_unavailable() -> None:
    health = Health()
    with pytest.raises(StoreUnavailable, match="refused|connect") as err:
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/none", owner="province-44", health=health)
    assert err.value.unreachable and not health.ok
    assert "\n" not in err.value.reason


def test_a_bug_is_not_an_outage(tmp_path: Path) -> None:
    store, events = open_store(tmp_path, Clock())
    import sqlalchemy as sa
    with pytest.raises(sa.exc.OperationalError, match="no such column"):  # SQLite's type for it, but a bug
        with store.engine.connect() as conn:
            conn.execute(sa.text("SELECT no_such_column FROM records"))
    assert store.health.ok and events == []
    store.close()


@pytest.mark.parametrize("package", ["node", "hub", "cli"])
def test_no_sqlalchemy_error_is_caught_above_the_store(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sqlalchemy.exc"):
                pytest.fail(f"{path.relative_to(ROOT)} imports {node.module}: catch core.errors.StoreUnavailable")
