"""Person keys (issue 12): the claims table.

Revision ID: 0009_person_keys
Revises: 0008_delay_counts

It also marks a store that holds person records for the one-time re-key of its legacy
(uuid) person records to their ID's key: that needs the federation secret, so the node and
the national hub do it when they open the store with it (store/rekey.py), and log what
they did.

A create of a person by a province that the record held here does not involve is a
claim: kept in ``claims`` (the signed change as received), not merged, until the
household province accepts it (``yipanqi claims accept``) or refuses it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_person_keys"
down_revision = "0008_delay_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("claim_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_ms", sa.BigInteger),
        sa.Column("decided_by", sa.String(128)),
        sa.UniqueConstraint("origin", "seq", name="uq_claims_change"),
    )
    op.create_index("ix_claims_record", "claims", ["kind", "record_id", "status"])
    from store.rekey import mark_pending

    mark_pending(op.get_bind())


def downgrade() -> None:
    op.execute("DELETE FROM meta WHERE key = 'person_keys'")
    op.drop_index("ix_claims_record", table_name="claims")
    op.drop_table("claims")
