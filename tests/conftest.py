"""Fixtures shared by all tests.

Database fixtures:

* ``pg_admin_url`` (session): the PostgreSQL admin URL from ``YIPANQI_TEST_PG_URL``
  (``scripts/test`` starts a throwaway server and sets it). Unset -> the test is
  skipped, or fails when ``CI=true``.
* ``fresh_pg_url`` (function): URL of a brand-new, uniquely named database, dropped
  after the test.
* ``db_url`` (function, params ``sqlite`` / ``postgresql``): a fresh, empty store URL
  on each backend, so storage contract tests run one test body against both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

PG_URL_ENV = "YIPANQI_TEST_PG_URL"


def _normalize_pg_url(raw: str) -> URL:
    url = make_url(raw)
    # Plain "postgresql://" would pick psycopg2, which is not installed: use psycopg 3.
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


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
