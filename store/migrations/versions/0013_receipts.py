"""Issue 17's receipts below the wire: ``chains``, ``owed``, ``receipts_in`` (the author's side) and
``inbox`` (the destination's side); see store/schema.py and store/receipts.py.

Revision ID: 0013_receipts
Revises: 0012_parked_deltas

Only adds tables: nothing existing is rewritten.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_receipts"
down_revision = "0012_parked_deltas"
branch_labels = None
depends_on = None


def _ranges() -> list[sa.Column]:
    return [sa.Column("held", sa.Text, nullable=False), sa.Column("parked", sa.Text, nullable=False),
            sa.Column("refused", sa.Text, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "chains",
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("dest", sa.String(64), primary_key=True),
        sa.Column("last", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "owed",
        sa.Column("dest", sa.String(64), primary_key=True),
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("n", sa.BigInteger, primary_key=True),
        sa.Column("delta_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("first_ms", sa.BigInteger, nullable=False),
        sa.Column("sent_ms", sa.BigInteger, nullable=False),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("resent", sa.Integer, nullable=False),
    )
    op.create_index("ix_owed_sent", "owed", ["sent_ms"])
    op.create_index("ix_owed_seq", "owed", ["seq"])
    op.create_table(
        "receipts_in",
        sa.Column("dest", sa.String(64), primary_key=True),
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        *_ranges(),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("heard_ms", sa.BigInteger, nullable=False),
        sa.Column("progress_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "inbox",
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        *_ranges(),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inbox")
    op.drop_table("receipts_in")
    op.drop_index("ix_owed_seq", table_name="owed")
    op.drop_index("ix_owed_sent", table_name="owed")
    op.drop_table("owed")
    op.drop_table("chains")
