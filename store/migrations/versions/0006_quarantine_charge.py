"""Quarantine rows name the party they are charged to (its capped share).

Revision ID: 0006_quarantine_charge
Revises: 0003

Rows from before the upgrade have no party; the caps count from the upgrade on
(store.quarantine keeps the running totals in counters).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_quarantine_charge"
down_revision = "0005_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("charged", sa.String(64), nullable=True))
