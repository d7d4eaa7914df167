"""Counters: running totals for status, kept in the data's own transactions.

Revision ID: 0003
Revises: 0002

The record counts are filled in by the store the first time it opens an
upgraded database (one COUNT); per-origin summaries fill in as changes arrive.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(96), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )
