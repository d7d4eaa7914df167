"""The ``db_url`` fixture gives a fresh, working store on both backends."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


def test_db_url_is_fresh_and_round_trips_a_row(db_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["db_url"]
    engine = sa.create_engine(db_url)
    try:
        assert engine.dialect.name == backend
        if backend == "postgresql":
            assert engine.dialect.driver == "psycopg"

        assert not sa.inspect(engine).has_table("probe"), "database is not fresh"
        meta = sa.MetaData()
        probe = sa.Table(
            "probe",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(64), nullable=False),
        )
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(probe.insert(), [{"id": 1, "name": "一盘棋"}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(probe.c.id, probe.c.name)).all()
        assert [tuple(r) for r in rows] == [(1, "一盘棋")]
    finally:
        engine.dispose()
