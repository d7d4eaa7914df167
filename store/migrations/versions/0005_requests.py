"""The requests projection (协查 / 通报) and a covering index for statistics over persons.

Revision ID: 0005_requests
Revises: 0004_kind_projections

``requests`` is kept by the store from each request record's shown values, in the
record's own transaction; a store that held no request records before has nothing
to backfill. ``ix_records_flows`` lets the GROUP BYs of ``stats``, ``assess`` and
``report flows`` read the index alone, whatever the size of the states.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_requests"
down_revision = "0004_kind_projections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("from_p", sa.String(2), nullable=False),
        sa.Column("to_p", sa.String(2), nullable=False),
        sa.Column("to_side", sa.String(16)),
        sa.Column("person_id", sa.String(64)),
        sa.Column("sent_on", sa.String(10)),
        sa.Column("due_on", sa.String(10)),
        sa.Column("state", sa.String(16)),
        sa.Column("answered_on", sa.String(10)),
        sa.Column("closed_on", sa.String(10)),
        sa.Column("answer_days", sa.Integer),
    )
    op.create_index("ix_requests_to", "requests", ["to_p", "sent_on"])
    op.create_index("ix_requests_from", "requests", ["from_p", "sent_on"])
    op.create_index("ix_records_flows", "records", ["kind", "record_id", "deleted", "household", "residence", "moved_on"])
