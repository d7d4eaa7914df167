"""The receipts desk (runtime.receipts) with real keys and real stores, on SQLite and PostgreSQL.

An author (province-11) owes changes to 44 and 31; destination 44 signs cumulative receipts with
its real signing key. The author accepts only a receipt signed by the destination it names and
about itself, settles what it covers, alerts past ``receipt_alert_s`` naming the hub that had
custody, and re-sends only to a destination that still answers. The destination signs a stream's
receipt at most once a second, and again unchanged as a heartbeat. Time is an injected clock.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from core.errors import BadSignature, Malformed, UnknownAuthor, Unauthorised
from core.receipts import HELD, Receipt, parse_receipt, receipt_body
from node.status import node_status
from runtime import metrics
from runtime.receipts import ReceiptDesk, owed_report
from runtime.replica import Replica
from store.store import Store
from tests.support.pki import PKI

ALERT_S = 300.0
ME = "province-11"


class Clock:
    def __init__(self) -> None:
        self.ms = time.time_ns() // 1_000_000  # certificates are checked against it: real "now"

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def world(db_url: str, tmp_path: Path, pki: PKI, opened: list[Store]):  # type: ignore[no-untyped-def]
    clock = Clock()
    author = Store.open(db_url, owner=ME)
    dest = Store.open(f"sqlite:///{tmp_path / '44.db'}", owner="province-44")
    opened += [author, dest]
    mine = ReceiptDesk(author, Replica(ME, author, pki.keyring()), pki.signer(ME), alert_s=ALERT_S, now_ms=clock)
    theirs = ReceiptDesk(dest, Replica("province-44", dest, pki.keyring()), pki.signer("province-44"),
                         alert_s=ALERT_S, now_ms=clock)
    return clock, author, dest, mine, theirs


def _write(author: Store, seq: int, dests: list[str], now: int) -> dict[str, int]:
    chain = author.assign_counters(dests)
    author.note_owed(chain, delta_id=f"{seq:064x}", seq=seq, now_ms=now)
    return chain


def _signed(pki: PKI, who: str, receipt: Receipt, at: int) -> tuple[bytes, str, bytes]:
    body = receipt_body(receipt, at)
    signer = pki.signer(who)
    return body, signer.key_id, signer.sign_receipt(body)


def test_a_signed_receipt_from_the_destination_settles_what_it_covers(world, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    clock, author, dest, mine, theirs = world
    for seq in range(1, 5):
        chain = _write(author, seq, ["44", "31"], clock())
        if seq != 2:
            dest.note_delivered(ME, 0, chain["44"], HELD, now_ms=clock())
    (sent,) = theirs.outgoing()
    assert (sent.origin, sent.epoch) == (ME, 0)
    assert parse_receipt(sent.body) == (Receipt("44", ME, 0, held=((1, 1), (3, 4))), clock())
    assert mine.receive(sent.body, sent.key_id, sent.signature) == 3
    assert [e.n for e in author.owed_to("44")] == [2]
    assert [e.n for e in author.owed_to("31")] == [1, 2, 3, 4]


def test_a_receipt_is_refused_unless_the_destination_signed_it_about_us(world, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    clock, author, _dest, mine, _theirs = world
    _write(author, 1, ["44"], clock())
    r = Receipt("44", ME, 0, held=((1, 1),))
    body, key_id, sig = _signed(pki, "province-31", r, clock())  # another province signs "as 44"
    with pytest.raises(Unauthorised, match="receipt.dest: names 44, but province-31 signed it"):
        mine.receive(body, key_id, sig)
    body, key_id, sig = _signed(pki, "hub-pearl", r, clock())  # a hub cannot sign a province's receipt
    with pytest.raises(Unauthorised, match="receipt.dest"):
        mine.receive(body, key_id, sig)
    body, key_id, sig = _signed(pki, "province-44", r, clock())
    with pytest.raises(BadSignature):
        mine.receive(body.replace(b'"held":[[1,1]]', b'"held":[[1,2]]'), key_id, sig)  # altered on the way
    with pytest.raises(UnknownAuthor):
        mine.receive(body, "sha256:" + "0" * 32, sig)
    body, key_id, sig = _signed(pki, "province-44", Receipt("44", "province-45", 0, held=((1, 1),)), clock())
    with pytest.raises(Unauthorised, match="receipt.origin: about province-45, not province-11"):
        mine.receive(body, key_id, sig)
    body, key_id, sig = _signed(pki, "province-44", r, clock() + 3_600_000)  # dated an hour ahead
    with pytest.raises(Malformed, match="receipt.at: 3600 s in the future"):
        mine.receive(body, key_id, sig)
    signer = pki.signer("province-44")
    bad = b'{"at":1,"dest":"44","epoch":0,"held":[[2,1]],"origin":"province-11","parked":[],"receipt":2,"refused":[]}'
    with pytest.raises(Malformed, match="held: each range"):
        mine.receive(bad, signer.key_id, signer.sign_receipt(bad))
    big = b" " * 65_537
    with pytest.raises(Malformed, match="receipt: over 65536 bytes"):
        mine.receive(big, signer.key_id, signer.sign_receipt(big))
    assert [e.n for e in author.owed_to("44")] == [1]  # nothing refused settled anything
    assert author.receipts_heard() == {}
    # The national hub signs for "national", and only it.
    _write(author, 2, ["national"], clock())
    body, key_id, sig = _signed(pki, "hub-national", Receipt("national", ME, 0, held=((1, 1),)), clock())
    assert mine.receive(body, key_id, sig) == 1


def test_the_destination_certificate_may_travel_with_its_receipt(db_url: str, pki: PKI, opened: list[Store]) -> None:
    clock = Clock()
    author = Store.open(db_url, owner=ME)
    opened.append(author)
    replica = Replica(ME, author, pki.keyring(exclude=("province-44",)))  # 44 never sent us a change
    mine = ReceiptDesk(author, replica, pki.signer(ME), alert_s=ALERT_S, now_ms=clock)
    _write(author, 1, ["44"], clock())
    body, key_id, sig = _signed(pki, "province-44", Receipt("44", ME, 0, held=((1, 1),)), clock())
    with pytest.raises(UnknownAuthor):
        mine.receive(body, key_id, sig)
    with pytest.raises(Malformed, match="receipt.certificate: is not the certificate of"):
        mine.receive(body, key_id, sig, certificate=pki.signer("province-31").cert_der)
    foreign = pki.foreign_signer()  # a "province-44" certificate from another CA: the keyring refuses it
    fbody = receipt_body(Receipt("44", ME, 0, held=((1, 1),)), clock())
    with pytest.raises(UnknownAuthor):
        mine.receive(fbody, foreign.key_id, foreign.sign_receipt(fbody), certificate=foreign.cert_der)
    assert mine.receive(body, key_id, sig, certificate=pki.signer("province-44").cert_der) == 1


def _alerts_counted(dest: str, via: str) -> float:
    return REGISTRY.get_sample_value("yipanqi_receipt_alerts_total", {"destination": dest, "via": via}) or 0.0


def test_alert_past_the_delay_names_the_hub_and_resends_only_to_a_destination_that_answers(world, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    clock, author, _dest, mine, _theirs = world
    start = clock()
    _write(author, 1, ["44", "31"], start)
    author.note_custody("hub-pearl", 1, 1)
    assert mine.tick().alerts == [] and mine.tick().resend == []
    before = _alerts_counted("44", "hub-pearl")
    # 44 answers (a heartbeat receipt signed now, about our stream); 31 has said nothing.
    clock.ms += int(ALERT_S * 1000)
    body, key_id, sig = _signed(pki, "province-44", Receipt("44", ME, 0), clock())
    assert mine.receive(body, key_id, sig) == 0
    tick = mine.tick()
    assert sorted((a.dest, a.counter, a.seq, a.via, a.age_s) for a in tick.alerts) == [
        ("31", 1, 1, "hub-pearl", ALERT_S), ("44", 1, 1, "hub-pearl", ALERT_S)]
    assert [(e.dest, e.n, e.delta_id, e.resent) for e in tick.resend] == [("44", 1, f"{1:064x}", 1)]
    assert _alerts_counted("44", "hub-pearl") == before + 1
    clock.ms += 1000
    again = mine.tick()
    assert len(again.alerts) == 2 and again.resend == []  # re-sent a second ago; 31 still silent
    assert _alerts_counted("44", "hub-pearl") == before + 1  # an alert is counted once, not per tick
    # Status and /metrics show it; the caller may vouch for 31 another way.
    doc = owed_report(author, clock(), ALERT_S)
    assert doc["44"] == {"oldest_seq": 1, "oldest_counter": 1, "oldest_delta": f"{1:064x}",
                         "oldest_age_s": ALERT_S + 1, "via": "hub-pearl", "owed": 1, "alert": True}
    assert [e.dest for e in mine.tick(also_alive=["31"]).resend] == ["31"]
    # 44 goes quiet for longer than the delay: no more re-sending to it.
    clock.ms += int(ALERT_S * 1000) + 1
    assert [e.dest for e in mine.tick().resend] == []
    # Its receipt comes at last: settled, the alert is gone.
    body, key_id, sig = _signed(pki, "province-44", Receipt("44", ME, 0, held=((1, 1),)), clock())
    assert mine.receive(body, key_id, sig) == 1
    assert [a.dest for a in mine.tick().alerts] == ["31"]


def test_receipts_go_out_at_most_once_a_second_per_stream_with_a_heartbeat(world) -> None:  # type: ignore[no-untyped-def]
    clock, _author, dest, _mine, theirs = world
    assert theirs.outgoing() == []
    dest.note_delivered(ME, 0, 1, HELD, now_ms=clock())
    dest.note_delivered("province-45", 0, 1, HELD, now_ms=clock())
    assert sorted(s.origin for s in theirs.outgoing()) == [ME, "province-45"]
    dest.note_delivered(ME, 0, 2, HELD, now_ms=clock() + 1)
    clock.ms += 999
    assert theirs.outgoing() == []  # changed, but a receipt went out less than a second ago
    clock.ms += 1
    (sent,) = theirs.outgoing()  # only the stream that changed
    assert sent.origin == ME and parse_receipt(sent.body)[0].held == ((1, 2),)
    clock.ms += 5000
    assert theirs.outgoing() == []  # nothing changed: quiet until the heartbeat
    clock.ms += int(ALERT_S * 1000 / 3)
    assert sorted(s.origin for s in theirs.outgoing()) == [ME, "province-45"]


def test_node_status_and_metrics_show_receipts_only_when_owed(world, pki: PKI) -> None:  # type: ignore[no-untyped-def]
    clock, author, dest, _mine, _theirs = world
    doc = node_status(author, None)
    assert "receipts" not in doc and "gaps" not in doc  # today's output, unchanged
    collected = {m.name: m for m in metrics.StatusCollector(lambda: doc).collect()}
    assert collected["yipanqi_unreceipted_age_seconds"].samples == []
    _write(author, 1, ["44"], clock() - 400_000)
    author.note_custody("hub-pearl", 1, 1)
    doc = node_status(author, None, receipt_alert_s=ALERT_S)
    row = doc["receipts"]["44"]
    assert (row["oldest_seq"], row["via"], row["owed"], row["alert"]) == (1, "hub-pearl", 1, True)
    assert row["oldest_age_s"] >= 400
    collected = {m.name: m for m in metrics.StatusCollector(lambda: doc).collect()}
    (sample,) = collected["yipanqi_unreceipted_age_seconds"].samples
    assert sample.labels == {"destination": "44", "via": "hub-pearl"} and sample.value >= 400
    dest.note_delivered_many([(ME, 0, 1, HELD), (ME, 0, 4, HELD)], now_ms=clock())
    assert node_status(dest, None)["gaps"] == {ME: [{"epoch": 0, "missing": [[2, 3]]}]}
