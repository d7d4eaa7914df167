"""Requests in the store and the assessment's SQL, on SQLite and PostgreSQL (``db_url``).

A request written at 44 reaches 45 through ``runtime.intake.check`` with a real verifier; an
answer 44 forges for its own request (signed with its own real key) is refused by 45's history
and quarantined, charged to 44 (only the receiver answers); 45's own answer reaches 44.
The requests side table follows the record, and the assessment queries give, on both
backends, the figures computed here by hand.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Callable

import pytest
import sqlalchemy as sa

from core.change import Envelope
from core.delta import Delta
from core.errors import LocalError
from core.hlc import Timestamp
from core.request import validate_request
from runtime.intake import check
from store import assess as q
from store.schema import requests
from store.store import IngestResult, Store
from tests.support.pki import PKI

TODAY = date(2026, 3, 20)
T0 = 1_773_964_800_000
PERSON = "3b0c3b55-6a0e-4c44-9a4b-6f1b2f0c1a11"



def _set(values: dict[str, object]) -> Callable[[object], tuple[str, dict[str, object]]]:
    return lambda current: ("create" if current is None else "update", values)


def _request(**kw: object) -> dict[str, object]:
    base = {"from_province": "44", "to_province": "45", "to_side": "household", "person_id": PERSON,
            "subject": "核实", "sent_on": "2026-03-01", "due_on": "2026-03-16", "state": "open"}
    return validate_request({**base, **kw}, today=TODAY)


def _carry(pki: PKI, src: Store, dst: Store, province: str, now_ms: int) -> IngestResult:
    """``src``'s last own delta reaches ``dst`` (a node of ``province``) through intake with a real verifier."""
    env = src.outbox(src.last_seq() - 1)[-1].envelope
    accepted, refused = check([env], pki.verifier(), peer="hub-pearl", peer_may_forward=True, for_province=province)
    assert len(accepted) == 1 and refused == []
    return dst.ingest(accepted, [], via="hub-pearl", now_ms=now_ms)


def _row(s: Store, rid: str) -> tuple:  # type: ignore[type-arg]
    with s.engine.connect() as conn:
        row = conn.execute(sa.select(requests).where(requests.c.request_id == rid)).one()._mapping
    return row["state"], row["answered_on"], row["answer_days"]


def test_forged_answer_is_quarantined_and_the_projection_follows(db_url: str, pki: PKI,
                                                                  opened: list[Store]) -> None:
    author = Store.open("sqlite://", owner="province-44")
    receiver = Store.open(db_url, owner="province-45")
    opened += [author, receiver]
    seal = pki.sealer("province-44")
    rid = str(uuid.uuid4())
    created = author.write_local("request", rid, _set(_request()), operator=None, now_ms=T0, seal=seal)
    answer = {"state": "answered", "answer": "自答", "answered_on": "2026-03-02"}
    with pytest.raises(LocalError, match="only by the receiver 45"):  # 44's own node will not write it
        author.write_local("request", rid, _set(answer), operator=None, now_ms=T0 + 1, seal=seal)
    assert author.last_seq() == 1
    # A compromised 44 signs the answer by hand, on its request, with its own real key.
    forged = Delta("request", rid, "province-44", 0, 2, Timestamp(T0 + 1, 0, "province-44"), "update", None,
                   (created.id,), (), {**answer, "_deleted": False}, frozenset({"44", "45"}), {})
    body = forged.to_body()
    (forged_seal,) = seal([body])
    envs = [author.outbox(0)[0].envelope, Envelope(body, forged_seal, forged.openings())]
    accepted, refused = check(envs, pki.verifier(), peer="hub-pearl", peer_may_forward=True, for_province="45")
    assert len(accepted) == 2 and refused == []  # well-formed and truly signed: the history decides
    res = receiver.ingest(accepted, refused, via="hub-pearl", now_ms=T0 + 2)
    assert (res.applied, res.quarantined) == (1, 1)
    (row,) = receiver.quarantined()
    assert row.reason.startswith("unauthorised writer: ") and "may be written only by the receiver 45, not 44" in row.reason
    assert row.charged == "province-44" and receiver.quarantine_body(row.id) == body
    assert _row(receiver, rid) == ("open", None, None)
    # The receiver answers; its side table, and the sender's once the answer arrives, follow the record.
    receiver.write_local("request", rid, _set({**answer, "answer": "已核实"}), operator=None, now_ms=T0 + 3,
                         seal=pki.sealer("province-45"))
    assert _row(receiver, rid) == ("answered", "2026-03-02", 1)
    assert _carry(pki, receiver, author, "44", T0 + 4).applied == 1
    assert _row(author, rid) == ("answered", "2026-03-02", 1)
    assert author.get("request", rid).values()["answer"] == "已核实"  # type: ignore[union-attr]


def test_assessment_queries_by_hand(db_url: str, pki: PKI, opened: list[Store]) -> None:
    s = Store.open(db_url, owner="province-44")
    r45 = Store.open("sqlite://", owner="province-45")  # answers what it receives (only the receiver may)
    opened += [s, r45]
    seal = pki.sealer("province-44")
    rows = [  # (to, side, sent, due, answered, closed)
        ("45", "household", "2026-03-01", "2026-03-16", "2026-03-05", None),   # on time, 4 days
        ("45", "household", "2026-03-02", "2026-03-10", "2026-03-12", None),   # late, 10 days
        ("45", "household", "2026-03-03", "2026-03-25", None, None),           # open, not yet due
        ("45", "household", "2026-03-01", "2026-03-05", None, None),           # open, overdue
        ("45", "residence", "2026-03-01", "2026-03-05", None, "2026-03-04"),   # closed before due: not overdue
        ("45", "residence", "2026-02-01", "2026-02-05", None, "2026-02-09"),   # closed after due: overdue
    ]
    for to, side, sent, due, answered, closed in rows:
        values: dict[str, object] = {"to_province": to, "to_side": side, "sent_on": sent, "due_on": due}
        if closed:
            values.update(state="closed", closed_on=closed)
        rid = str(uuid.uuid4())
        s.write_local("request", rid, _set(_request(**values)), operator=None, now_ms=T0, seal=seal)
        if answered:
            _carry(pki, s, r45, "45", T0)
            r45.write_local("request", rid, _set({"state": "answered", "answer": "ok", "answered_on": answered}),
                            operator=None, now_ms=T0, seal=pki.sealer("province-45"))
            assert _carry(pki, r45, s, "44", T0).applied == 1
    with s.engine.connect() as conn:
        figures, days = q.request_figures(conn, None, None, TODAY.isoformat())
        assert sorted(figures) == [("45", "household", 4, 1, 2), ("45", "residence", 2, 0, 1)]
        assert sorted(days) == [("45", "household", 4, 1), ("45", "household", 10, 1)]
        assert sorted(q.request_figures(conn, "2026-03-02", "2026-03-31", TODAY.isoformat())[0]) == [
            ("45", "household", 2, 0, 1)]
        assert q.open_requests(conn, "44", TODAY.isoformat()) == {
            "received_open": 0, "received_overdue": 0, "sent_open": 2, "sent_overdue": 1}
        assert q.open_requests(conn, "45", TODAY.isoformat())["received_overdue"] == 1
        assert q.request_counterparts(conn, "44") == {"44", "45"}
        assert q.migrant_pairs(conn) == [] and q.served_migrants(conn, None, None) == []
        assert q.quarantined_by_origin(conn, None, None) == {}
    # A migrant from 45 living in 44, served once (a certificate check) and holding a certificate of 45.
    import random

    from core.person import validate_person
    from core.samples import sample_person

    p = sample_person(random.Random(3), household="45", residence="44", today=TODAY)
    pid = str(uuid.uuid4())
    s.write_local("person", pid, _set(validate_person({**p, "moved_in_on": "2026-03-01"}, today=TODAY)),
                  operator=None, now_ms=T0, seal=seal)
    s.write_local("service", str(uuid.uuid4()), _set({"person_id": pid, "type": "certificate_check",
                                                      "on": "2026-03-10", "provider_province": "44",
                                                      "household_province": "45", "residence_province": "44"}),
                  operator=None, now_ms=T0, seal=seal)
    s.write_local("certificate", str(uuid.uuid4()), _set({"person_id": pid, "household_province": "45",
                                                          "residence_province": "44", "issued_on": "2026-01-01",
                                                          "expires_on": "2028-01-01", "status": "revoked",
                                                          "status_on": "2026-03-11"}),
                  operator=None, now_ms=T0, seal=seal)
    with s.engine.connect() as conn:
        assert q.migrant_pairs(conn) == [("45", "44", 1)]  # the running totals
        assert q.migrant_pairs(conn, moved_from="2026-03-01") == [("45", "44", 1)]  # the index scan
        assert q.migrant_pairs(conn, moved_from="2026-03-02") == []
        assert q.served_migrants(conn, None, None) == [("44", 1)]
        assert q.served_migrants(conn, "2026-03-11", None) == []
        assert q.certificate_checks(conn, None, "2026-03-10") == [("44", 1)]
        assert q.certificates_issued(conn, None, None) == [("45", 1)]
        assert q.certificates_issued(conn, "2026-02-01", None) == []
        assert q.certificates_revoked(conn, "2026-03-11", "2026-03-11") == [("45", 1)]
    # The running totals of migrants per pair follow a move, a return home and a delete.
    def pairs() -> list:  # type: ignore[type-arg]
        with s.engine.connect() as conn:
            return q.migrant_pairs(conn)

    move = {"residence_province": "11", "residence_city": None, "moved_in_on": "2026-03-15"}
    s.write_local("person", pid, _set(move), operator=None, now_ms=T0 + 1, seal=seal)
    assert pairs() == [("45", "11", 1)]
    # 44 is no longer involved in that person (household 45, living in 11): its node may not write it
    # again. The return home and the delete, then, on a person of 44's own household.
    with pytest.raises(LocalError, match="not involved"):
        s.write_local("person", pid, _set({**move, "residence_province": "45"}), operator=None, now_ms=T0 + 2,
                      seal=seal)
    own = str(uuid.uuid4())
    home = validate_person(sample_person(random.Random(4), household="44", residence="44", today=TODAY), today=TODAY)
    s.write_local("person", own, _set(home), operator=None, now_ms=T0 + 2, seal=seal)
    assert pairs() == [("45", "11", 1)]
    s.write_local("person", own, _set({**move, "residence_province": "31"}), operator=None, now_ms=T0 + 3, seal=seal)
    assert pairs() == [("44", "31", 1), ("45", "11", 1)]
    s.write_local("person", own, _set({**move, "residence_province": "44"}), operator=None, now_ms=T0 + 4, seal=seal)
    assert pairs() == [("45", "11", 1)]
    s.write_local("person", own, _set({**move, "residence_province": "45"}), operator=None, now_ms=T0 + 5, seal=seal)
    assert pairs() == [("44", "45", 1), ("45", "11", 1)]
    s.write_local("person", own, lambda current: ("delete", {}), operator=None, now_ms=T0 + 6, seal=seal)
    assert pairs() == [("45", "11", 1)]


def test_upgrade_to_0005_counts_pairs_and_fills_services(db_url: str) -> None:
    """A store at 0004_kind_projections with persons and a service: 0005 counts the migrants per
    pair from the projection columns and copies the service records' provinces to their rows."""
    import json

    from store.db import migrate, open_engine

    engine = open_engine(db_url)
    try:
        migrate(engine, "0004_kind_projections")
        rec = sa.table("records", *(sa.column(c) for c in ("kind", "record_id", "state", "deleted", "conflicted",
                                                            "provinces", "updated_ms", "household", "residence")))
        people = [("p1", False, "65", "44"), ("p2", False, "65", "44"), ("p3", False, "44", "44"),
                  ("p4", True, "11", "44"), ("p5", False, None, "44")]
        sid = str(uuid.uuid4())
        state = {"stamps": [], "fields": {"household_province": [["65", 0]], "residence_province": [["44", 0]]}}
        with engine.begin() as conn:
            conn.execute(rec.insert(), [{"kind": "person", "record_id": rid, "state": b"{}", "deleted": gone,
                                         "conflicted": False, "provinces": ",44,", "updated_ms": 0, "household": h,
                                         "residence": r} for rid, gone, h, r in people])
            conn.execute(rec.insert(), [{"kind": "service", "record_id": sid, "state": json.dumps(state).encode(),
                                         "deleted": False, "conflicted": False, "provinces": ",44,65,",
                                         "updated_ms": 0, "household": None, "residence": None}])
            conn.execute(sa.text("INSERT INTO services (service_id, person_id, type, given_on, provider) "
                                 "VALUES (:s, :p, 'birth', '2026-01-01', '44')"), {"s": sid, "p": PERSON})
        migrate(engine)
        with engine.connect() as conn:
            assert q.migrant_pairs(conn) == [("65", "44", 2)]
            assert conn.execute(sa.text("SELECT household, residence FROM services")).all() == [("65", "44")]
    finally:
        engine.dispose()


def test_delivery_delays_and_quarantine_for_a_period_by_hand(db_url: str, pki: PKI, opened: list[Store]) -> None:
    """Changes of 45, 31 and 11 reach 44 through the hub at known write (at_ms) and receive
    (received_ms) times: the delays of those received within the period, median and p95 per
    origin, come from SQL; one received the day before and one the first millisecond after do
    not count, nor 44's own writes; a clock ahead of ours counts as 0."""
    from runtime.assess import _ms, assessment
    from store.store import Refused

    s = Store.open(db_url, owner="province-44")
    opened.append(s)
    day = "2026-03-10"
    b, e = _ms(day), _ms(day, next_day=True)
    assert b is not None and e is not None

    def arrive(author: Store, code: str, times: list[tuple[int, int]]) -> None:
        for written, received in times:  # in write order: the author's clock goes forward
            author.write_local("request", str(uuid.uuid4()),
                               _set(_request(from_province=code, to_province="44", to_side="residence")),
                               operator=None, now_ms=written, seal=pki.sealer(f"province-{code}"))
            env = author.outbox(author.last_seq() - 1)[-1].envelope
            accepted, refused = check([env], pki.verifier(), peer="hub-pearl", peer_may_forward=True,
                                      for_province="44")
            assert len(accepted) == 1 and not refused
            s.ingest(accepted, [], via="hub-pearl", now_ms=received)

    authors = {c: Store.open("sqlite://", owner=f"province-{c}") for c in ("45", "31", "11")}
    opened.extend(authors.values())
    arrive(authors["45"], "45", [(b - 100_000, b - 1),                     # 99.999 s, the day before: out
                                 (b + 60_000, b + 61_000), (b + 120_000, b + 122_000),   # 1 s, 2 s
                                 (b + 180_000, b + 183_000), (b + 240_000, b + 250_000)])  # 3 s, 10 s
    arrive(authors["31"], "31", [(b + 10_000, b + 10_500), (b + 20_000, b + 20_700),   # 0.5 s, 0.7 s
                                 (b + 30_000, b + 29_700),                             # -0.3 s: 0
                                 (b + 40_000, b + 80_000),                             # 40 s
                                 (e - 10_000, e)])                                     # the next day: out
    arrive(authors["11"], "11", [(b + 1_000_000 + i * 100_000, b + 1_000_000 + i * 100_000 + (i + 1) * 1000)
                                 for i in range(20)])                                  # 1 s .. 20 s
    s.write_local("request", str(uuid.uuid4()), _set(_request(to_province="45")), operator=None, now_ms=b + 5000,
                  seal=pki.sealer("province-44"))  # 44's own: via "local", never a delivery delay
    env = authors["45"].outbox(0)[0].envelope
    for origin, charged, at in (("province-45", "hub-pearl", b + 1000), ("province-31", "province-31", b + 2000),
                                ("province-31", "province-31", b - 5), ("province-44", None, b + 3000)):
        s.ingest([], [Refused(env, "test: refused", origin, 1, "request", "r", charged=charged)], via="hub-pearl",
                 now_ms=at)
    with s.engine.connect() as conn:
        # 45: 1 2 3 10 s: median (2+3)/2, p95 at rank ceil(0.95*4) = 4; 31: 0 .5 .7 40 s; 11: 1..20 s,
        # median (10+11)/2, p95 at rank ceil(0.95*20) = 19.
        # 19 s and 20 s share a bucket (core.delays: [18432, 20480) ms), so 11's p95 is their mean.
        assert q.delivery_delays(conn, day, day) == {"province-45": (4, 2500, 10_000),
                                                     "province-31": (4, 600, 40_000),
                                                     "province-11": (20, 10_500, 19_500)}
        whole = q.delivery_delays(conn, None, None)  # with the two outside: 45 has 5, 31 has 5 changes
        assert whole["province-45"] == (5, 3000, 99_999) and whole["province-31"] == (5, 700, 40_000)
        assert q.delivery_delays(conn, "2026-03-11", None) == {"province-31": (1, 10_000, 10_000)}
        assert q.delivery_delays(conn, None, "2026-03-09") == {"province-45": (1, 99_999, 99_999)}
        assert q.quarantined_by_party(conn, b, e) == {"province-31": 1, "hub-pearl": 2}  # no charge: the peer
        assert q.quarantined_by_origin(conn, b, e) == {"province-45": 1, "province-31": 1, "province-44": 1}
    doc = assessment(s, own="44", from_date=day, to_date=day, today=TODAY)
    fed = {p["province"]: p["federation"] for p in doc["provinces"]}  # type: ignore[attr-defined]
    assert fed["45"] == {"delivery_changes": 4, "delivery_p50_s": 2.5, "delivery_p95_s": 10.0, "quarantined": 0,
                         "quarantined_claiming": 1}
    assert fed["31"] == {"delivery_changes": 4, "delivery_p50_s": 0.6, "delivery_p95_s": 40.0, "quarantined": 1,
                         "quarantined_claiming": 1}
    assert fed["11"]["delivery_p50_s"] == 10.5 and fed["11"]["delivery_p95_s"] == 19.5
    assert fed["44"] == {"delivery_changes": 0, "delivery_p50_s": None, "delivery_p95_s": None, "quarantined": 0,
                         "quarantined_claiming": 1}  # a node has no delivery figure for its own changes
