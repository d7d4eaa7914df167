"""The database schema shared by nodes and hubs (one migration chain).

    records     current state of every record this replica holds
    log         every change this replica accepted, in acceptance order (lsn):
                a node's own changes are its outbox; a hub's log is its
                store-and-forward queue; a change's digest is unique (with its
                origin and seq), so a change is applied at most once, and two
                different changes under one (origin, seq) are both kept
    equivocations
                one row per digest of each (origin, seq) signed more than once
    upstream_quarantine
                a node's own changes its hub acknowledged as quarantined
    chains, owed, receipts_in, inbox
                issue 17's receipts (store.receipts): counters assigned per destination,
                what is still owed to each, the receipts destinations signed, and (as a
                destination) what we hold of each origin's counters
    log_dest    hubs only: one row per (province a change routes to, lsn),
                the index every subscriber's queue is read from
    quarantine  changes refused, with the reason and the bytes as received
    cursors     durable positions: what a hub acknowledged, what we pulled
    counters    running totals for status (record counts, last change per origin)
    delay_counts
                delivery-delay histograms per day/month/year and origin, for ``assess``
    peers       last acknowledged cursor and contact per subscriber (status)
    keys        signing certificates learned from peers (trust is re-checked
                against the CA on load)
    requests    projection of request records (who asked whom, when due, when answered)
    meta        this store's identity, so a file is never opened as another node
    certificates, services
                per-kind side tables: one row per live record of that kind, from
                its shown values (core.kinds Kind.project), kept by the store in
                the record's own transaction (see store.projections)
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid alias.
Lsn = BigInteger().with_variant(Integer(), "sqlite")

records = Table(
    "records",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("state", LargeBinary, nullable=False),  # canonical JSON of RecordState
    Column("deleted", Boolean, nullable=False),
    Column("conflicted", Boolean, nullable=False),
    Column("provinces", String(128), nullable=False),  # ",44,45," for LIKE-free filters
    Column("updated_ms", BigInteger, nullable=False),
    # Projections of the shown values, for statistics by SQL (added in 0002).
    Column("household", String(2)),
    Column("residence", String(2)),
    Column("moved_on", String(10)),
    Index("ix_records_conflicted", "conflicted"),
    # Covers the statistics' and assessment's GROUP BYs over persons and their joins by person id
    # (added in 0005): an index-only scan or probe, never a read of the state blobs.
    Index("ix_records_flows", "kind", "record_id", "deleted", "household", "residence", "moved_on"),
)

# Who a person record is (added in 0010_person_identity), from its shown values: finding the person a
# node already holds by ID number (Store.people_by_id_number), and likely duplicates by GROUP BY
# (store.duplicates), each an index-only scan or probe, never a read of the state blobs.
records.append_column(Column("id_number", String(18)))
records.append_column(Column("person_name", String(64)))
records.append_column(Column("birth_date", String(10)))
records.append_column(Column("sex", String(1)))
Index("ix_records_id_number", records.c.kind, records.c.id_number, records.c.deleted, records.c.record_id)
Index("ix_records_same_person", records.c.kind, records.c.person_name, records.c.birth_date, records.c.sex,
      records.c.deleted, records.c.id_number, records.c.record_id)

log = Table(
    "log",
    metadata,
    Column("lsn", Lsn, primary_key=True, autoincrement=True),
    Column("origin", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("op", String(16), nullable=False),
    Column("operator", String(96)),
    Column("at_ms", BigInteger, nullable=False),
    Column("digest", LargeBinary, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("seal_index", Integer, nullable=False),
    Column("seal_size", Integer, nullable=False),
    Column("proof", LargeBinary, nullable=False),  # concatenated 32-byte hashes
    Column("routes", String(128), nullable=False),  # ",44,45,"
    Column("shared", Boolean, nullable=False),  # routes reach beyond the author's province
    Column("via", String(64), nullable=False),  # peer we got it from ("local" for our own)
    Column("received_ms", BigInteger, nullable=False),
    Column("openings", LargeBinary),  # v2 deltas: their field values (core.delta); NULL for v1 changes (0012)
    # The history this delta carries to a province it newly involves (core.relay, packed); NULL
    # for most (0014).
    Column("relay", LargeBinary),
    # The digest determines origin and seq (the body names them): unique by digest (0011), so an
    # origin's two different changes under one seq (equivocation) are both kept.
    UniqueConstraint("origin", "seq", "digest", name="uq_log_origin_seq_digest"),
    Index("ix_log_record", "kind", "record_id"),
)

# v2 deltas whose dependencies (or whose time) this replica does not have yet (added in
# 0012_parked_deltas; docs/design/v2-wire.md 3.3): kept durably, verified, exactly as received,
# with what each waits for (delta ids, or "time"). Never capped: a verified delta waiting for its
# history is not junk. Held deltas live in ``log``, as every change does.
parked = Table(
    "parked",
    metadata,
    Column("digest", String(64), primary_key=True),  # the delta's id: SHA-256 hex of its body
    Column("kind", String(32), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("origin", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("signer", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("seal_index", Integer, nullable=False),
    Column("seal_size", Integer, nullable=False),
    Column("proof", LargeBinary, nullable=False),
    Column("openings", LargeBinary, nullable=False),
    Column("waiting_for", Text, nullable=False),  # ",<id>,<id>," or ",time,"
    Column("via", String(64), nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Index("ix_parked_record", "kind", "record_id"),
)

# What each parked delta waits for, one row per dependency (0012): finding the deltas a newly held
# one releases is an index probe, however many are parked (parked deltas are never capped).
parked_waits = Table(
    "parked_waits",
    metadata,
    Column("dep", String(64), primary_key=True),  # a delta id the parked one waits for
    Column("digest", String(64), primary_key=True),  # the parked delta
)

# Records an alias took into another (``person link``; added in 0012_parked_deltas): a delta that
# arrives for ``record_id`` is decided in the graph of ``into``, so both keys are one record.
aliases = Table(
    "aliases",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("into", String(64), nullable=False),
    Column("since_ms", BigInteger, nullable=False),
)

# Delivery delays as histograms (added in 0008_delay_counts, replacing 0007's ix_log_delay): per
# China-time day, month and year (``level`` 0/1/2, ``unit`` its number, core.delays.units), origin
# province and delay bucket, the changes received from peers and the sum of their delays, added
# in the transaction that logs them (store.delays). Kept by replicas that hold records (nodes, the
# national hub), which are the ones that assess.
delay_counts = Table(
    "delay_counts",
    metadata,
    Column("level", Integer, primary_key=True),
    Column("unit", Integer, primary_key=True),
    Column("origin", String(64), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("changes", BigInteger, nullable=False),
    Column("total_ms", BigInteger, nullable=False),
    sqlite_with_rowid=False,  # the rows live in the key's b-tree: a period's range scans read no other page
)

log_dest = Table(
    "log_dest",
    metadata,
    Column("province", String(2), primary_key=True),
    Column("lsn", BigInteger, primary_key=True),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Lsn, primary_key=True, autoincrement=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("peer", String(64), nullable=False),
    Column("origin", String(64)),
    Column("seq", BigInteger),
    Column("kind", String(32)),
    Column("record_id", String(64)),
    Column("reason", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("key_id", String(64)),
    Column("signature", LargeBinary),
    # Whose capped share the row takes (store.quarantine; added in 0006_quarantine_charge).
    Column("charged", String(64)),
)

cursors = Table(
    "cursors",
    metadata,
    Column("name", String(96), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("identity", String(96), nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("added_ms", BigInteger, nullable=False),
)

# Running totals kept in the same transactions as the data they summarise (added in 0003):
# live and conflicted record counts, and per origin the last change applied and its lag,
# so status answers in O(1) whatever the size of the store.
counters = Table(
    "counters",
    metadata,
    Column("name", String(96), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# One row per request record (kind ``request``), kept from its shown values in the same
# transaction as the record row (added in 0005): what ``assess``, ``status`` and
# ``request list`` count in SQL. ``to_side`` is the receiver's role for the person when the
# request was sent (residence / household); ``answer_days`` = answered_on - sent_on in days.
requests = Table(
    "requests",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("from_p", String(2), nullable=False),
    Column("to_p", String(2), nullable=False),
    Column("to_side", String(16)),
    Column("person_id", String(64)),
    Column("sent_on", String(10)),
    Column("due_on", String(10)),
    Column("state", String(16)),
    Column("answered_on", String(10)),
    Column("closed_on", String(10)),
    Column("answer_days", Integer),
    Index("ix_requests_to", "to_p", "sent_on"),
    Index("ix_requests_from", "from_p", "sent_on"),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


# Per-kind projections (added in 0004_kind_projections). The first primary-key column is the
# record id; every other column is nullable, because values from peers are fitted to the
# column or left out (the record state stays authoritative).
certificates = Table(
    "certificates",
    metadata,
    Column("cert_no", String(64), primary_key=True),
    Column("person_id", String(64)),
    Column("issuer", String(2)),
    Column("issued_on", String(10)),
    Column("expires_on", String(10)),
    Column("status", String(16)),
    Column("status_on", String(10)),
    Index("ix_certificates_person", "person_id"),
)

services = Table(
    "services",
    metadata,
    Column("service_id", String(64), primary_key=True),
    Column("person_id", String(64)),
    Column("type", String(32)),
    Column("given_on", String(10)),
    Column("provider", String(2)),
    Index("ix_services_person", "person_id"),
)


# Added in 0005_requests, for the assessment's GROUP BYs (scans of covering indexes in group order):
# the services rows carry the person's household and residence provinces (the service record's
# own routing fields, re-written when the person moves), so coverage needs no join to records.
services.append_column(Column("household", String(2)))
services.append_column(Column("residence", String(2)))
Index("ix_services_served", services.c.residence, services.c.person_id, services.c.household, services.c.given_on)
Index("ix_services_type", services.c.type, services.c.given_on, services.c.provider)
Index("ix_certificates_issued", certificates.c.issued_on, certificates.c.issuer)
Index("ix_certificates_status", certificates.c.status, certificates.c.status_on, certificates.c.issuer)
# In GROUP BY order, so the request figures are one streaming pass over the index.
Index("ix_requests_sides", requests.c.to_p, requests.c.to_side, requests.c.answer_days, requests.c.sent_on,
      requests.c.due_on, requests.c.answered_on, requests.c.closed_on)

# Added in 0009_person_keys (issue 12): a create of a person by a province the record held here
# does not involve, kept apart until the household province accepts or refuses it (store.claims).
claims = Table(
    "claims",
    metadata,
    Column("claim_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("origin", String(64), nullable=False),  # the claimer
    Column("seq", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),  # the claimer's signed change, exactly as received
    Column("received_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # open, accepted, merged (accepted elsewhere), refused
    Column("decided_ms", BigInteger),
    Column("decided_by", String(128)),  # the operator certificate, or the change that merged it
    Index("ix_claims_change", "origin", "seq"),  # not unique since 0011: an equivocating origin's two claims
    Index("ix_claims_record", "kind", "record_id", "status"),
)

# Added in 0011_equivocation (issue 10, finding 4): every digest of an (origin, seq) that its origin
# signed more than once, and when this replica first saw it; both bodies stay in the log (evidence).
equivocations = Table(
    "equivocations",
    metadata,
    Column("origin", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("digest", LargeBinary, primary_key=True),
    Column("first_seen_ms", BigInteger, nullable=False),
)

# Added in 0011_equivocation (finding 5): what our hub acknowledged as quarantined of our own
# changes, one row per Ack that counted any (the seqs it named, the last reason category).
upstream_quarantine = Table(
    "upstream_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hub", String(64), nullable=False),
    Column("first_seq", BigInteger),
    Column("last_seq", BigInteger),
    Column("changes", Integer, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
)

# Issue 17's bookkeeping (added in 0013_receipts; core.receipts, store.receipts). Ranges are kept as
# canonical JSON text "[[1,17],[19,19]]": a stream's ranges are read and written whole.
#
# The author's side. ``chains``: the last per-destination counter assigned per (origin, key epoch,
# destination). ``owed``: each counter not yet covered by that destination's receipt, with the delta
# it numbers, the hub that took custody, when it was first and last sent. ``receipts_in``: the
# merged receipt each destination signed about each origin's stream, when its signed time last
# moved (``heard_ms``: the destination is answering) and when what it covers last grew.
chains = Table(
    "chains",
    metadata,
    Column("origin", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("dest", String(64), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

owed = Table(
    "owed",
    metadata,
    Column("dest", String(64), primary_key=True),
    Column("origin", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("n", BigInteger, primary_key=True),
    Column("delta_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),  # the delta's seq: what hub acks (custody) name
    Column("first_ms", BigInteger, nullable=False),
    Column("sent_ms", BigInteger, nullable=False),  # last (re)sent: the re-send clock
    Column("via", String(64), nullable=False),  # the hub that took custody ("" before any did)
    Column("resent", Integer, nullable=False),
    Index("ix_owed_sent", "sent_ms"),
    Index("ix_owed_seq", "seq"),
)

receipts_in = Table(
    "receipts_in",
    metadata,
    Column("dest", String(64), primary_key=True),
    Column("origin", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("held", Text, nullable=False),
    Column("parked", Text, nullable=False),
    Column("refused", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),  # the latest signed receipt time
    Column("heard_ms", BigInteger, nullable=False),  # our clock when at_ms last moved
    Column("progress_ms", BigInteger, nullable=False),  # our clock when what it covers last grew
)

# The destination's side: per (origin, epoch), the counters it durably holds, parked and refused:
# what its cumulative receipt says. ``updated_ms``: when it last changed (a receipt is due).
inbox = Table(
    "inbox",
    metadata,
    Column("origin", String(64), primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("held", Text, nullable=False),
    Column("parked", Text, nullable=False),
    Column("refused", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)
