"""A covering index on the log by origin and delay, for the assessment's delivery delays.

Revision ID: 0007_log_received
Revises: 0006_quarantine_charge

``assess`` computes the delay of each province's changes (received_ms - at_ms of the
changes received from peers) for a period of received_ms, with ROW_NUMBER over each
origin's delays in order; this expression index gives the rows in that order (no sort) and
covers every column the query reads (never the change bodies).
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_log_received"
down_revision = "0006_quarantine_charge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_log_delay", "log", ["origin", sa.text("(received_ms - at_ms)"), "received_ms", "via", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_log_delay", table_name="log")
