"""Initial schema: records, log, log_dest, quarantine, cursors, keys, meta.

Revision ID: 0001
Revises:
"""

from alembic import op

from store.schema import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first release's schema is exactly store.schema's tables as of 0001.
    # Later revisions must spell out their changes (add_column, ...) instead.
    metadata.create_all(op.get_bind())
