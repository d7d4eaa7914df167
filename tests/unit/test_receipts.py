"""core.receipts: per-destination counters, cumulative receipts, gaps, what stays owed.

Random traffic from one author to a few destinations, with each delivery dropped, duplicated
or reordered, and each receipt dropped, duplicated or reordered on the way back. Whatever the
order, once the last receipts arrive the author owes each destination exactly the counters
that never reached it, and each destination's gaps are exactly those below what it saw.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import BadSignature, Malformed
from core.receipts import (HELD, PARKED, REFUSED, Custody, Inbox, Ledger, Receipt, covers, normalise,
                           parse_receipt, receipt_body, without)

DESTS = ["11", "44", "65", "national"]
ranges = st.lists(st.tuples(st.integers(1, 40), st.integers(0, 6)).map(lambda t: (t[0], t[0] + t[1])), max_size=6)


def as_set(rs) -> set[int]:  # type: ignore[no-untyped-def]
    return {n for lo, hi in rs for n in range(lo, hi + 1)}


@given(ranges, ranges)
def test_range_algebra_is_set_algebra(a, b) -> None:  # type: ignore[no-untyped-def]
    assert as_set(normalise(a)) == as_set(a)
    n = normalise(a)
    assert all(n[i][1] + 1 < n[i + 1][0] for i in range(len(n) - 1))  # disjoint, not adjacent
    assert as_set(without(a, b)) == as_set(a) - as_set(b)


receipts = st.builds(lambda h, p, r: Receipt("44", "province-11", 0, normalise(h), without(p, h), without(r, h + p)),
                     ranges, ranges, ranges)


@given(receipts, receipts, receipts)
def test_receipts_merge_as_a_join(a, b, c) -> None:  # type: ignore[no-untyped-def]
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a).covered == a.covered
    assert as_set(a.merge(b).covered) == as_set(a.covered) | as_set(b.covered)
    assert as_set(a.held) <= as_set(a.merge(b).held)  # a held counter never goes back


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_the_author_owes_exactly_what_never_arrived(data: st.DataObject) -> None:
    ledger = Ledger("province-11", 0)
    inboxes = {d: Inbox(d) for d in DESTS}
    delivered: dict[str, set[int]] = {d: set() for d in DESTS}
    in_flight: list[tuple[str, int]] = []
    now = 0
    for _ in range(data.draw(st.integers(1, 40))):
        now += data.draw(st.integers(0, 1000))
        routes = data.draw(st.sets(st.sampled_from(DESTS), min_size=1))
        chain = ledger.assign(routes, now_ms=now, via="hub-pearl")
        assert set(chain) == routes
        for d, n in chain.items():
            copies = data.draw(st.sampled_from([0, 1, 1, 1, 2]))  # dropped, delivered, duplicated
            in_flight += [(d, n)] * copies
    order = data.draw(st.permutations(range(len(in_flight)))) if in_flight else []
    for i in order:
        d, n = in_flight[i]
        inboxes[d].note("province-11", 0, n, data.draw(st.sampled_from([HELD, HELD, PARKED, REFUSED])))
        delivered[d].add(n)
        if data.draw(st.booleans()):  # a receipt now and then, possibly lost
            if data.draw(st.booleans()):
                ledger.receive(inboxes[d].receipt("province-11", 0), now_ms=now)
    for d in DESTS:  # the last receipts arrive, twice and stale ones again
        r = inboxes[d].receipt("province-11", 0)
        ledger.receive(r, now_ms=now)
        ledger.receive(r, now_ms=now)
        ledger.receive(Receipt(d, "province-11", 0), now_ms=now)
    for d in DESTS:
        sent = set(range(1, ledger.next_counter.get(d, 0) + 1))
        assert set(ledger.owed.get(d, {})) == sent - delivered[d]
        seen_max = max(delivered[d], default=0)
        assert as_set(inboxes[d].gaps("province-11", 0)) == set(range(1, seen_max + 1)) - delivered[d]


def test_a_parked_counter_later_held_counts_as_held() -> None:
    inbox = Inbox("44")
    inbox.note("province-11", 0, 1, PARKED)
    inbox.note("province-11", 0, 1, HELD)
    r = inbox.receipt("province-11", 0)
    assert (r.held, r.parked) == (((1, 1),), ())
    assert covers(r.covered, 1) and not covers(r.covered, 2)


def test_resend_waits_for_the_alert_delay_and_a_destination_that_answers() -> None:
    ledger = Ledger("province-11", 0)
    ledger.assign(["65"], now_ms=0, via="hub-pearl")
    ledger.assign(["65", "44"], now_ms=1_000, via="hub-pearl")
    assert ledger.oldest() == {"44": (1, 1_000, "hub-pearl"), "65": (1, 0, "hub-pearl")}
    assert ledger.due(now_ms=200_000, alert_ms=300_000, alive={"65": True, "44": True}) == []
    assert ledger.due(now_ms=400_000, alert_ms=300_000, alive={"65": False, "44": False}) == []
    due = ledger.due(now_ms=400_000, alert_ms=300_000, alive={"65": True})
    assert [(d, o.n, o.resent) for d, o in due] == [("65", 1, 1), ("65", 2, 1)]
    assert ledger.due(now_ms=500_000, alert_ms=300_000, alive={"65": True}) == []  # not again until the delay
    assert ledger.receive(Receipt("65", "province-11", 0, held=((1, 2),)), now_ms=600_000) == 2
    assert ledger.oldest() == {"44": (1, 1_000, "hub-pearl")}
    # A receipt for another origin or epoch settles nothing.
    assert ledger.receive(Receipt("44", "province-11", 1, held=((1, 1),)), now_ms=600_000) == 0
    assert ledger.receive(Receipt("44", "province-31", 0, held=((1, 1),)), now_ms=600_000) == 0


# -- the signed forms -------------------------------------------------------------------------------

@given(receipts, st.integers(0, 2**63 - 1))
def test_a_receipt_reads_back_exactly(r, at) -> None:  # type: ignore[no-untyped-def]
    assert parse_receipt(receipt_body(r, at)) == (r, at)


@pytest.mark.parametrize("change, message", [
    (lambda o: o | {"held": [[3, 1]]}, "held: each range"),
    (lambda o: o | {"parked": [[1, 2**63]]}, "parked: each range"),
    (lambda o: o | {"refused": [[1, 1]] * 257}, "refused: must be a list of at most"),
    (lambda o: o | {"epoch": -1}, "epoch:"),
    (lambda o: o | {"dest": ""}, "dest:"),
    (lambda o: o | {"extra": 1}, "extra: not a field"),
    (lambda o: o | {"receipt": 1}, "receipt: not a v2 receipt"),
])
def test_a_malformed_receipt_is_refused_naming_the_key(change, message) -> None:  # type: ignore[no-untyped-def]
    import json

    good = json.loads(receipt_body(Receipt("44", "province-11", 0, held=((1, 5),)), 7))
    with pytest.raises(Malformed, match=message):
        parse_receipt(json.dumps(change(good)).encode())


def test_receipt_and_custody_signatures_verify_only_as_themselves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from certs.signing import CUSTODY_PREFIX, RECEIPT_PREFIX, REPORT_PREFIX
    from tests.support.pki import build_pki

    pki = build_pki(tmp_path)
    keyring = pki.keyring()
    node, hub = pki.signer("province-44"), pki.signer("hub-pearl")
    body = receipt_body(Receipt("44", "province-11", 0, held=((1, 5),)), 1_000)
    signature = node.sign_receipt(body)
    assert keyring.verify(node.key_id, RECEIPT_PREFIX + body, signature) == "province-44"
    for prefix in (REPORT_PREFIX, CUSTODY_PREFIX, b""):  # never taken for a report, a custody or a batch
        with pytest.raises(BadSignature):
            keyring.verify(node.key_id, prefix + body, signature)
    custody = Custody("hub-pearl", "province-11", 0, 1, 20, 1_000).to_body()
    assert keyring.verify(hub.key_id, CUSTODY_PREFIX + custody, hub.sign_custody(custody)) == "hub-pearl"
    with pytest.raises(BadSignature):  # an altered range does not verify
        keyring.verify(hub.key_id, CUSTODY_PREFIX + custody.replace(b'"last":20', b'"last":2'), hub.sign_custody(custody))
