"""Delivery-delay histograms replace the log's delay index.

Revision ID: 0008_delay_counts
Revises: 0007_log_received

``delay_counts`` holds, per China-time day, month and year, origin province and delay
bucket (core.delays), the changes received from peers and the sum of their delays; the
store adds to it in the transaction that logs them (store.delays) and ``assess`` reads its
median and p95 from it, so 0007's ``ix_log_delay`` (on every log insert, at every hop) is dropped. The upgrade
fills the counters from the log once, streaming (origin, at_ms, received_ms) of the
changes received from peers, on the replicas that keep them: those that hold records (a
node, the national hub). A regional hub (no records) gets the empty table, which it never
writes or reads.
"""

import sqlalchemy as sa
from sqlalchemy import Connection
from alembic import op

# The live scheme, on purpose: the counters must be what store.delays would have kept. A
# release that changes the buckets or levels needs a migration that refills them.
from core.delays import bucket, day_of, units

revision = "0008_delay_counts"
down_revision = "0007_log_received"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delay_counts",
        sa.Column("level", sa.Integer, primary_key=True),
        sa.Column("unit", sa.Integer, primary_key=True),
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True),
        sa.Column("changes", sa.BigInteger, nullable=False),
        sa.Column("total_ms", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    if conn.exec_driver_sql("SELECT 1 FROM records LIMIT 1").first() is not None:
        _fill(conn)
    op.drop_index("ix_log_delay", table_name="log")


def _fill(conn: Connection) -> None:
    cells: dict[tuple[int, str, int], list[int]] = {}
    rows = conn.execute(
        sa.text("SELECT origin, at_ms, received_ms FROM log WHERE via <> 'local' AND origin LIKE :provinces"),
        {"provinces": "province-%"}, execution_options={"stream_results": True, "yield_per": 20_000})
    for origin, at_ms, received_ms in rows:
        delay = max(received_ms - at_ms, 0)
        key = (day_of(received_ms), origin, bucket(delay))
        cell = cells.get(key)
        if cell is None:
            cells[key] = [1, delay]
        else:
            cell[0] += 1
            cell[1] += delay
    rolled: dict[tuple[int, int, str, int], list[int]] = {}  # the day's counts, and its month's and year's
    for (day, origin, b), (n, total) in cells.items():
        for level, unit in units(day):
            cell = rolled.setdefault((level, unit, origin, b), [0, 0])
            cell[0] += n
            cell[1] += total
    table = sa.table("delay_counts", sa.column("level"), sa.column("unit"), sa.column("origin"), sa.column("bucket"),
                     sa.column("changes"), sa.column("total_ms"))
    items = [{"level": level, "unit": unit, "origin": o, "bucket": b, "changes": n, "total_ms": s}
             for (level, unit, o, b), (n, s) in rolled.items()]
    for i in range(0, len(items), 10_000):
        conn.execute(table.insert(), items[i:i + 10_000])


def downgrade() -> None:
    op.create_index("ix_log_delay", "log", ["origin", sa.text("(received_ms - at_ms)"), "received_ms", "via", "at_ms"])
    op.drop_table("delay_counts")
