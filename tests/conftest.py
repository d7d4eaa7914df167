"""Fixtures shared by all tests.

Database fixtures:

* ``pg_admin_url`` (session): the PostgreSQL admin URL from ``YIPANQI_TEST_PG_URL``
  (``scripts/test`` starts a throwaway server and sets it). Unset -> the test is
  skipped, or fails when ``CI=true``.
* ``fresh_pg_url`` (function): URL of a brand-new, uniquely named database, dropped
  after the test.
* ``db_url`` (function, params ``sqlite`` / ``postgresql``): a fresh, empty store URL
  on each backend, so storage contract tests run one test body against both.

Hypothesis: the ``shared`` profile is loaded for every run: no deadline and no ``too_slow``
health check, because on a 2-core machine running four workers (and their federations) the
time an example takes says nothing about the code; ``max_examples`` stays each test's own.

Order: files run longest first (``pytest_collection_modifyitems``), so that under
pytest-xdist's ``--dist loadfile --no-loadscope-reorder`` (scripts/test) no worker picks up a
two-minute file while the others are finishing: the slow files below (measured), then the
other integration files, then the rest; within a file, tests keep their order. The files in
``SPLIT_BY_TEST`` share no module-scoped fixture (each test starts its own federation), so
under ``--dist loadfile`` their tests are handed out one by one (``pytest_xdist_make_scheduler``)
and two slow ones run on two workers at once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

PG_URL_ENV = "YIPANQI_TEST_PG_URL"

settings.register_profile("shared", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared")


def _normalize_pg_url(raw: str) -> URL:
    url = make_url(raw)
    # Plain "postgresql://" would pick psycopg2, which is not installed: use psycopg 3.
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


# The slowest files, slowest first (seconds of one 4-worker run on the shared 2-core machine, rounded).
# A file missing here only starts later; keep the list to the few that decide when a run ends.
SLOW_FIRST = [
    "tests/integration/test_requests.py",  # 260
    "tests/integration/test_fault_run.py",  # 250
    "tests/integration/test_services.py",  # 245
    "tests/integration/test_person_keys.py",  # 230
    "tests/integration/test_conflict.py",  # 170
    "tests/integration/test_certificates.py",  # 160
    "tests/integration/test_bench_smoke.py",  # 100
    "tests/unit/test_convergence.py",  # 80
    "tests/integration/test_store_faults.py",  # 90
    "tests/integration/test_operations.py",  # 80
    "tests/integration/test_recovery.py",  # 70
    "tests/integration/test_hub_crash.py",  # 60
    "tests/unit/test_federation_memnet.py",  # 50
    "tests/unit/test_core_fastpaths.py",  # 50
]


# Files whose tests share nothing (no module-scoped fixture: each starts its own federation), so
# each test may run on any worker. A file that gains a module-scoped fixture must leave this list.
SPLIT_BY_TEST = {
    "tests/integration/test_fault_run.py",
    "tests/integration/test_person_keys.py",
    "tests/integration/test_conflict.py",
    "tests/integration/test_store_faults.py",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """--dist loadfile, except that each test of a SPLIT_BY_TEST file is a unit of its own."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SplitSlowFiles(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return nodeid if path in SPLIT_BY_TEST else super()._split_scope(nodeid)

    return SplitSlowFiles(config, log)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[int, int]:
        path = item.nodeid.split("::", 1)[0]
        if path in SLOW_FIRST:
            return (0, SLOW_FIRST.index(path))
        return (1 if path.startswith("tests/integration/") else 2, 0)

    items.sort(key=rank)  # stable: the order within a rank (and a file) is kept


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    raw = os.environ.get(PG_URL_ENV, "").strip()
    if not raw:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(
                "CI must run the PostgreSQL tests: YIPANQI_TEST_PG_URL is not set",
                pytrace=False,
            )
        pytest.skip("PostgreSQL tests need YIPANQI_TEST_PG_URL (scripts/test starts a server)")
    return _normalize_pg_url(raw).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _pg_admin_engine(pg_admin_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        shown = make_url(pg_admin_url).render_as_string(hide_password=True)
        pytest.fail(f"cannot connect to PostgreSQL at {shown}: {exc}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_pg_url(pg_admin_url: str, _pg_admin_engine: sa.Engine) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"  # safe identifier: no quoting/injection issues
    with _pg_admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with _pg_admin_engine.connect() as conn:
            # FORCE terminates connections the test left open (e.g. undisposed engines).
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("fresh_pg_url")
