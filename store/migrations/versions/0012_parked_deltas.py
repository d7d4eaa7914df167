"""v2 deltas waiting for their dependencies (``parked``, docs/design/v2-wire.md 3.3), ``aliases``, and ``log.openings``.

Revision ID: 0012_parked_deltas
Revises: 0011_equivocation

Only adds tables and a nullable column: nothing existing is rewritten.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_parked_deltas"
down_revision = "0011_equivocation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "parked",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("seal_index", sa.Integer, nullable=False),
        sa.Column("seal_size", sa.Integer, nullable=False),
        sa.Column("proof", sa.LargeBinary, nullable=False),
        sa.Column("openings", sa.LargeBinary, nullable=False),
        sa.Column("waiting_for", sa.Text, nullable=False),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_parked_record", "parked", ["kind", "record_id"])
    op.create_table(
        "parked_waits",
        sa.Column("dep", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
    )
    with op.batch_alter_table("log") as batch:
        batch.add_column(sa.Column("openings", sa.LargeBinary, nullable=True))
    op.create_table(
        "aliases",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("into", sa.String(64), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("log") as batch:
        batch.drop_column("openings")
    op.drop_table("aliases")
    op.drop_table("parked_waits")
    op.drop_index("ix_parked_record", table_name="parked")
    op.drop_table("parked")
