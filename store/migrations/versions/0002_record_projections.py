"""Projections of household, residence and move date on records, for statistics in SQL.

Revision ID: 0002
Revises: 0001

Existing rows are backfilled from their stored state, page by page, so a
populated store upgrades in place without losing or rewriting any record.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


_SIZES = {"household_province": 2, "residence_province": 2, "moved_in_on": 10}


def _winner(fields: dict, name: str) -> object:
    # Stored state: {"stamps": [[clock, [wall, logical, node]], ...], "fields": {name: [[value, stamp], ...]}}
    versions = fields.get(name) or []
    value = versions[0][0] if versions else None
    # The store's own rule (store.store._text): text that fits the column, else NULL (the state stays
    # authoritative). A value this release would not write (a peer's newer format) must neither fail
    # the whole upgrade (PostgreSQL refuses over-long text) nor land in the column.
    return value if isinstance(value, str) and len(value) <= _SIZES[name] else None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("household", sa.String(2)))
        batch.add_column(sa.Column("residence", sa.String(2)))
        batch.add_column(sa.Column("moved_on", sa.String(10)))
    conn = op.get_bind()
    records = sa.table("records", sa.column("kind"), sa.column("record_id"), sa.column("state"),
                       sa.column("household"), sa.column("residence"), sa.column("moved_on"))
    after = ""
    while True:
        rows = conn.execute(
            sa.select(records.c.record_id, records.c.state)
            .where(sa.and_(records.c.kind == "person", records.c.record_id > after))
            .order_by(records.c.record_id).limit(1000)
        ).all()
        if not rows:
            break
        updates = []
        for record_id, state in rows:
            fields = json.loads(bytes(state))["fields"]
            updates.append({"rid": record_id, "h": _winner(fields, "household_province"),
                            "r": _winner(fields, "residence_province"), "m": _winner(fields, "moved_in_on")})
        conn.execute(
            records.update().where(sa.and_(records.c.kind == "person", records.c.record_id == sa.bindparam("rid")))
            .values(household=sa.bindparam("h"), residence=sa.bindparam("r"), moved_on=sa.bindparam("m")),
            updates,
        )
        after = rows[-1][0]
