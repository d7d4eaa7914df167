"""Projections of a person's ID number, name, birth date and sex on records, with their indexes.

Revision ID: 0010_person_identity
Revises: 0009_person_keys

What they are for: finding the person a node already holds by ID number (``person add`` and
``person import`` never create a second record), and ``yipanqi duplicates`` by GROUP BY. Existing
person rows are backfilled from their stored state, page by page, as 0002 did: nothing is
re-keyed or rewritten; a value that does not fit its column stays NULL (the state is authoritative).
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0010_person_identity"
down_revision = "0009_person_keys"
branch_labels = None
depends_on = None

_COLUMNS = {"id_number": ("id_number", 18), "person_name": ("name", 64), "birth_date": ("birth_date", 10),
            "sex": ("sex", 1)}


def _winner(fields: dict, name: str, size: int) -> object:
    versions = fields.get(name) or []
    value = versions[0][0] if versions else None
    return value if isinstance(value, str) and len(value) <= size and "\x00" not in value else None


def upgrade() -> None:
    with op.batch_alter_table("records") as batch:
        for column, (_field, size) in _COLUMNS.items():
            batch.add_column(sa.Column(column, sa.String(size)))
    conn = op.get_bind()
    records = sa.table("records", sa.column("kind"), sa.column("record_id"), sa.column("state"),
                       *(sa.column(c) for c in _COLUMNS))
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
            fields = json.loads(bytes(state)).get("fields") or {}  # a state without fields holds no identity
            updates.append({"rid": record_id, **{f"v_{c}": _winner(fields, f, size) for c, (f, size) in _COLUMNS.items()}})
        conn.execute(
            records.update().where(sa.and_(records.c.kind == "person", records.c.record_id == sa.bindparam("rid")))
            .values(**{c: sa.bindparam(f"v_{c}") for c in _COLUMNS}),
            updates,
        )
        after = rows[-1][0]
    op.create_index("ix_records_id_number", "records", ["kind", "id_number", "deleted", "record_id"])
    op.create_index("ix_records_same_person", "records",
                    ["kind", "person_name", "birth_date", "sex", "deleted", "id_number", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_records_same_person", table_name="records")
    op.drop_index("ix_records_id_number", table_name="records")
    with op.batch_alter_table("records") as batch:
        for column in reversed(list(_COLUMNS)):
            batch.drop_column(column)
