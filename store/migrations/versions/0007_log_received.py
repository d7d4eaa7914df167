"""A covering index on the log by received time, for the assessment's delivery delays.

Revision ID: 0007_log_received
Revises: 0006_quarantine_charge

``assess`` computes the delay of each province's changes (received_ms - at_ms of the
changes received from peers) for a period of received_ms; this index makes that an
index-only range scan (whole history: a scan of the index, never of the change bodies).
"""

from alembic import op

revision = "0007_log_received"
down_revision = "0006_quarantine_charge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_log_received", "log", ["received_ms", "origin", "via", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_log_received", table_name="log")
