"""Initial schema (release 0.1): records, log, log_dest, quarantine, cursors, keys, meta.

Revision ID: 0001
Revises:

Spelled out, not taken from store.schema: a migration is a frozen record of
what that release created, so later revisions can be tested against it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Lsn = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("conflicted", sa.Boolean, nullable=False),
        sa.Column("provinces", sa.String(128), nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_records_conflicted", "records", ["conflicted"])
    op.create_table(
        "log",
        sa.Column("lsn", Lsn, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("operator", sa.String(96)),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("seal_index", sa.Integer, nullable=False),
        sa.Column("seal_size", sa.Integer, nullable=False),
        sa.Column("proof", sa.LargeBinary, nullable=False),
        sa.Column("routes", sa.String(128), nullable=False),
        sa.Column("shared", sa.Boolean, nullable=False),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("origin", "seq", name="uq_log_origin_seq"),
    )
    op.create_index("ix_log_record", "log", ["kind", "record_id"])
    op.create_table(
        "log_dest",
        sa.Column("province", sa.String(2), primary_key=True),
        sa.Column("lsn", sa.BigInteger, primary_key=True),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", Lsn, primary_key=True, autoincrement=True),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(64)),
        sa.Column("seq", sa.BigInteger),
        sa.Column("kind", sa.String(32)),
        sa.Column("record_id", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64)),
        sa.Column("signature", sa.LargeBinary),
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(96), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("identity", sa.String(96), nullable=False),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("added_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
