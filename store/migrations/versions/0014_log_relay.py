"""``log.relay``: the history a delta carries to a province it newly involves (core.relay).

Revision ID: 0014_log_relay
Revises: 0013_receipts

Only adds a nullable column: nothing existing is rewritten.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_log_relay"
down_revision = "0013_receipts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log") as batch:
        batch.add_column(sa.Column("relay", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("log") as batch:
        batch.drop_column("relay")
