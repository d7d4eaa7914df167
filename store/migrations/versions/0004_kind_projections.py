"""Per-kind side tables: certificates and services (record kinds added with issue 14).

Revision ID: 0004_kind_projections
Revises: 0003

No backfill: before this release no node accepted a change of kind
certificate or service (an unknown kind is refused as malformed), so no store
holds such a record. Spelled out, not taken from store.schema (see 0001).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_kind_projections"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("cert_no", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(64)),
        sa.Column("issuer", sa.String(2)),
        sa.Column("issued_on", sa.String(10)),
        sa.Column("expires_on", sa.String(10)),
        sa.Column("status", sa.String(16)),
        sa.Column("status_on", sa.String(10)),
    )
    op.create_index("ix_certificates_person", "certificates", ["person_id"])
    op.create_table(
        "services",
        sa.Column("service_id", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(64)),
        sa.Column("type", sa.String(32)),
        sa.Column("given_on", sa.String(10)),
        sa.Column("provider", sa.String(2)),
    )
    op.create_index("ix_services_person", "services", ["person_id"])
