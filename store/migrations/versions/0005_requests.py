"""The requests projection (协查 / 通报) and a covering index for statistics over persons.

Revision ID: 0005_requests
Revises: 0004_kind_projections

``requests`` is kept by the store from each request record's shown values, in the
record's own transaction; a store that held no request records before has nothing
to backfill. ``ix_records_flows`` lets the GROUP BYs of ``stats``, ``assess`` and
``report flows`` read the index alone, whatever the size of the states. The
``pair:<household>:<residence>`` counters (store.tallies: live migrants per province
pair) are counted once here. ``services`` gains the person's household and residence
(backfilled from the service records' states) and, with ``certificates``, the indexes
the assessment's range scans use.
"""

import json

import sqlalchemy as sa
from sqlalchemy import Connection
from alembic import op

revision = "0005_requests"
down_revision = "0004_kind_projections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("from_p", sa.String(2), nullable=False),
        sa.Column("to_p", sa.String(2), nullable=False),
        sa.Column("to_side", sa.String(16)),
        sa.Column("person_id", sa.String(64)),
        sa.Column("sent_on", sa.String(10)),
        sa.Column("due_on", sa.String(10)),
        sa.Column("state", sa.String(16)),
        sa.Column("answered_on", sa.String(10)),
        sa.Column("closed_on", sa.String(10)),
        sa.Column("answer_days", sa.Integer),
    )
    op.create_index("ix_requests_to", "requests", ["to_p", "sent_on"])
    op.create_index("ix_requests_from", "requests", ["from_p", "sent_on"])
    op.create_index("ix_requests_sides", "requests",
                    ["to_p", "to_side", "answer_days", "sent_on", "due_on", "answered_on", "closed_on"])
    op.create_index("ix_records_flows", "records", ["kind", "record_id", "deleted", "household", "residence", "moved_on"])
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("household", sa.String(2)))
        batch.add_column(sa.Column("residence", sa.String(2)))
    op.create_index("ix_services_served", "services", ["residence", "person_id", "household", "given_on"])
    op.create_index("ix_services_type", "services", ["type", "given_on", "provider"])
    op.create_index("ix_certificates_issued", "certificates", ["issued_on", "issuer"])
    op.create_index("ix_certificates_status", "certificates", ["status", "status_on", "issuer"])
    conn = op.get_bind()
    records = sa.table("records", sa.column("kind"), sa.column("record_id"), sa.column("state"),
                       sa.column("deleted", sa.Boolean), sa.column("household"), sa.column("residence"))
    counters = sa.table("counters", sa.column("name"), sa.column("value"), sa.column("at_ms"))
    pairs = conn.execute(
        sa.select(records.c.household, records.c.residence, sa.func.count())
        .where(sa.and_(records.c.kind == "person", records.c.deleted == sa.false(),
                       records.c.household.is_not(None), records.c.residence.is_not(None),
                       records.c.household != records.c.residence))
        .group_by(records.c.household, records.c.residence)).all()
    if pairs:
        conn.execute(counters.insert(), [{"name": f"pair:{h}:{r}", "value": n, "at_ms": 0} for h, r, n in pairs])
    _backfill_services(conn, records)


def _winner(fields: dict, name: str) -> object:
    versions = fields.get(name) or []
    value = versions[0][0] if versions else None
    return value if isinstance(value, str) and len(value) <= 2 and "\x00" not in value else None


def _backfill_services(conn: Connection, records: sa.TableClause) -> None:
    services = sa.table("services", sa.column("service_id"), sa.column("household"), sa.column("residence"))
    after = ""
    while True:
        rows = conn.execute(
            sa.select(records.c.record_id, records.c.state)
            .where(sa.and_(records.c.kind == "service", records.c.record_id > after))
            .order_by(records.c.record_id).limit(1000)).all()
        if not rows:
            break
        updates = []
        for record_id, state in rows:
            fields = json.loads(bytes(state))["fields"]
            updates.append({"sid": record_id, "h": _winner(fields, "household_province"),
                            "r": _winner(fields, "residence_province")})
        conn.execute(services.update().where(services.c.service_id == sa.bindparam("sid"))
                     .values(household=sa.bindparam("h"), residence=sa.bindparam("r")), updates)
        after = rows[-1][0]
