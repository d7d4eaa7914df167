"""Equivocation kept, not quarantined (issue 10, finding 4); what the hub quarantined of ours (finding 5).

Revision ID: 0011_equivocation
Revises: 0010_person_identity

* The log's uniqueness goes from (origin, seq) to the change's digest: two different signed
  changes under one (origin, seq) are both logged, merged and forwarded as concurrent writes.
  The unique key is (origin, seq, digest), which the digest alone determines (the body names
  its origin and seq), and which still serves every lookup by origin and seq. Claims likewise.
* ``equivocations``: one row per digest of every (origin, seq) seen signed more than once,
  with when it was first seen here; the bodies are in the log (the evidence).
* ``upstream_quarantine``: on a node, what its hub acknowledged as quarantined of its own
  changes (seqs, count, reason category), so status never shows them as delivered.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_equivocation"
down_revision = "0010_person_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("log") as batch:
        batch.drop_constraint("uq_log_origin_seq", type_="unique")
        batch.create_unique_constraint("uq_log_origin_seq_digest", ["origin", "seq", "digest"])
    with op.batch_alter_table("claims") as batch:
        batch.drop_constraint("uq_claims_change", type_="unique")
    op.create_index("ix_claims_change", "claims", ["origin", "seq"])
    op.create_table(
        "equivocations",
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("digest", sa.LargeBinary, primary_key=True),
        sa.Column("first_seen_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "upstream_quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hub", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.BigInteger),
        sa.Column("last_seq", sa.BigInteger),
        sa.Column("changes", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("upstream_quarantine")
    op.drop_table("equivocations")
    op.drop_index("ix_claims_change", table_name="claims")
    with op.batch_alter_table("claims") as batch:
        batch.create_unique_constraint("uq_claims_change", ["origin", "seq"])
    with op.batch_alter_table("log") as batch:
        batch.drop_constraint("uq_log_origin_seq_digest", type_="unique")
        batch.create_unique_constraint("uq_log_origin_seq", ["origin", "seq"])
