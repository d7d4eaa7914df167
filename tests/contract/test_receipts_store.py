"""Issue 17's bookkeeping in the store (store.receipts), on SQLite and PostgreSQL (``db_url``).

The author's side: per-destination counters are handed out once each, across a restart; a
counter stays owed to its destination until that destination's receipt covers it (held, parked
or refused), a stale or repeated receipt takes nothing back, custody names the hub on the path,
and the re-send rule (core.receipts.Ledger.due) picks only what is past the delay, for a
destination that still answers. The destination's side: what arrived, in any order and more than
once, is what its cumulative receipt says, and the counters that never arrived are its gaps.
"""

from __future__ import annotations

import pytest

from core.receipts import HELD, PARKED, REFUSED, Receipt
from store.store import Store

T0 = 1_768_435_200_000
ME = "province-11"


def _open(url: str, owner: str, opened: list[Store]) -> Store:
    s = Store.open(url, owner=owner)
    opened.append(s)
    return s


def _owed(s: Store, dest: str) -> list[int]:
    return [e.n for e in s.owed_to(dest)]


def test_counters_are_per_destination_and_never_handed_out_twice(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, ME, opened)
    assert s.assign_counters(["44", "65"]) == {"44": 1, "65": 1}
    assert s.assign_counters(["44", "44"]) == {"44": 2}
    assert s.assign_counters(["65"], epoch=1) == {"65": 1}  # a new key epoch counts afresh
    s.close()
    s = _open(db_url, ME, opened)  # a restart: counters go on, never repeat
    assert s.assign_counters(["44", "national"]) == {"44": 3, "national": 1}
    assert s.assign_counters(["65"]) == {"65": 2}


def test_a_receipt_settles_exactly_what_it_covers(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, ME, opened)
    for i in range(1, 6):
        chain = s.assign_counters(["44", "65"])
        s.note_owed(chain, delta_id=f"{i:064x}", seq=i, now_ms=T0 + i)
    assert _owed(s, "44") == [1, 2, 3, 4, 5] and _owed(s, "65") == [1, 2, 3, 4, 5]
    # 44 holds 1..2, parked 3 (waiting for history), refused 5: only 4 is still owed.
    r = Receipt("44", ME, 0, held=((1, 2),), parked=((3, 3),), refused=((5, 5),))
    assert s.take_receipt(r, at_ms=T0 + 100, now_ms=T0 + 200) == 4
    assert _owed(s, "44") == [4] and _owed(s, "65") == [1, 2, 3, 4, 5]
    # A stale receipt, the same one again, and one about another origin's stream settle nothing
    # and take nothing back.
    assert s.take_receipt(Receipt("44", ME, 0, held=((1, 1),)), at_ms=T0 + 50, now_ms=T0 + 300) == 0
    assert s.take_receipt(r, at_ms=T0 + 100, now_ms=T0 + 300) == 0
    assert s.take_receipt(Receipt("44", "province-12", 0, held=((1, 9),)), at_ms=T0, now_ms=T0 + 300) == 0
    assert s.take_receipt(Receipt("44", ME, 1, held=((1, 9),)), at_ms=T0, now_ms=T0 + 300) == 0  # other epoch
    assert _owed(s, "44") == [4]
    oldest = s.oldest_owed()
    assert set(oldest) == {"44", "65"}
    assert (oldest["44"].n, oldest["44"].delta_id, oldest["44"].first_ms, oldest["44"].owed) == (4, f"{4:064x}", T0 + 4, 1)
    assert (oldest["65"].n, oldest["65"].owed) == (1, 5)
    # The parked 3 is later held: still settled, and 4 arriving settles the rest.
    assert s.take_receipt(Receipt("44", ME, 0, held=((1, 4),), refused=((5, 5),)), at_ms=T0 + 400, now_ms=T0 + 500) == 1
    assert "44" not in s.oldest_owed()
    # A counter assigned after a receipt already covered it (a destination that signed ahead of
    # time) is settled by its next receipt, even an unchanged one.
    s.note_owed({"44": 5}, delta_id="f" * 64, seq=9, now_ms=T0 + 600)
    assert _owed(s, "44") == [5]
    assert s.take_receipt(Receipt("44", ME, 0), at_ms=T0 + 700, now_ms=T0 + 800) == 1
    assert _owed(s, "44") == []


def test_custody_names_the_hub_on_the_path(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, ME, opened)
    for seq in (7, 8, 9):
        s.note_owed(s.assign_counters(["65"]), delta_id=f"{seq:064x}", seq=seq, now_ms=T0 + seq)
    assert s.oldest_owed()["65"].via == ""  # no hub acknowledged it yet
    assert s.note_custody("hub-pearl", 7, 8) == 2
    assert [e.via for e in s.owed_to("65")] == ["hub-pearl", "hub-pearl", ""]
    assert s.note_custody("hub-national", 8, 9) == 2  # re-sent through the fallback: it holds them now
    assert [e.via for e in s.owed_to("65")] == ["hub-pearl", "hub-national", "hub-national"]
    assert s.oldest_owed()["65"].via == "hub-pearl"


def test_resend_only_past_the_delay_and_only_to_a_destination_that_answers(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, ME, opened)
    alert = 300_000
    s.note_owed(s.assign_counters(["44", "65"]), delta_id="a" * 64, seq=1, now_ms=T0)
    s.note_owed(s.assign_counters(["44"]), delta_id="b" * 64, seq=2, now_ms=T0 + 200_000)
    # Before the delay nothing is due; 65 is down (not answering): never flooded.
    assert s.owed_due(now_ms=T0 + alert - 1, alert_ms=alert, alive={"44": True, "65": True}) == []
    due = s.owed_due(now_ms=T0 + alert, alert_ms=alert, alive={"44": True, "65": False})
    assert [(e.dest, e.n, e.delta_id, e.resent, e.sent_ms) for e in due] == [("44", 1, "a" * 64, 1, T0 + alert)]
    # Stamped: not due again until another delay has passed, while the age (first send) runs on.
    assert s.owed_due(now_ms=T0 + alert + 1000, alert_ms=alert, alive={"44": True}) == []
    assert s.oldest_owed()["44"].first_ms == T0
    due = s.owed_due(now_ms=T0 + 2 * alert, alert_ms=alert, alive={"44": True, "65": True})
    assert sorted((e.dest, e.n, e.resent) for e in due) == [("44", 1, 2), ("44", 2, 1), ("65", 1, 1)]
    assert s.owed_due(now_ms=T0 + 9 * alert, alert_ms=alert, alive={}) == []  # nobody answers: nothing


def test_a_destination_that_is_down_does_not_starve_the_others(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, ME, opened)
    for seq in range(1, 8):  # 65 (down) is owed more, and older, than a page holds
        s.note_owed(s.assign_counters(["65"]), delta_id=f"{seq:064x}", seq=seq, now_ms=T0)
    s.note_owed(s.assign_counters(["44"]), delta_id="e" * 64, seq=8, now_ms=T0 + 1)
    due = s.owed_due(now_ms=T0 + 10_000, alert_ms=5000, alive={"44": True, "65": False}, limit=3)
    assert [(e.dest, e.seq) for e in due] == [("44", 8)]


def test_heard_tracks_a_destination_answering_and_progressing(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, ME, opened)
    s.take_receipt(Receipt("44", "province-12", 0, held=((1, 3),)), at_ms=T0, now_ms=T0 + 10)
    assert s.receipts_heard() == {"44": (T0 + 10, T0 + 10)}
    s.take_receipt(Receipt("44", "province-12", 0, held=((1, 3),)), at_ms=T0 + 1000, now_ms=T0 + 1010)
    assert s.receipts_heard() == {"44": (T0 + 1010, T0 + 10)}  # signed again, nothing new
    s.take_receipt(Receipt("44", "province-12", 0, held=((1, 3),)), at_ms=T0 + 500, now_ms=T0 + 2000)
    assert s.receipts_heard() == {"44": (T0 + 1010, T0 + 10)}  # an older receipt is no news


def test_the_inbox_is_what_arrived_in_any_order_and_its_gaps(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, "province-44", opened)
    assert s.receipt_for(ME) == Receipt("44", ME, 0) and s.gaps() == {}
    s.note_delivered_many([(ME, 0, 3, HELD), (ME, 0, 1, HELD), (ME, 0, 3, HELD), (ME, 0, 6, PARKED),
                           (ME, 0, 7, REFUSED), ("province-12", 0, 2, HELD)], now_ms=T0)
    assert s.receipt_for(ME) == Receipt("44", ME, 0, held=((1, 1), (3, 3)), parked=((6, 6),), refused=((7, 7),))
    assert s.gaps() == {ME: {0: ((2, 2), (4, 5))}, "province-12": {0: ((1, 1),)}}
    s.note_delivered(ME, 0, 6, HELD, now_ms=T0 + 5)  # the parked one is held now
    s.note_delivered_many([(ME, 0, 2, HELD), (ME, 0, 4, HELD), (ME, 0, 5, HELD)], now_ms=T0 + 9)
    assert s.receipt_for(ME) == Receipt("44", ME, 0, held=((1, 6),), refused=((7, 7),))
    assert s.gaps() == {"province-12": {0: ((1, 1),)}}
    assert s.receipt_streams() == {(ME, 0): T0 + 9, ("province-12", 0): T0}
    s.close()
    s = _open(db_url, "province-44", opened)  # durable
    assert s.receipt_for(ME).held == ((1, 6),)


def test_a_bad_inbox_entry_is_refused_and_nothing_is_noted(db_url: str, opened: list[Store]) -> None:
    s = _open(db_url, "province-44", opened)
    with pytest.raises(ValueError, match="outcome 'lost'"):
        s.note_delivered_many([(ME, 0, 1, HELD), (ME, 0, 2, "lost")], now_ms=T0)
    with pytest.raises(ValueError, match="counter 0"):
        s.note_delivered(ME, 0, 0, HELD, now_ms=T0)
    assert s.receipt_for(ME) == Receipt("44", ME, 0) and s.receipt_streams() == {}


def test_the_national_hub_is_a_destination_too(db_url: str, opened: list[Store]) -> None:
    hub = _open(db_url, "hub-national", opened)
    hub.note_delivered_many([(ME, 0, 1, HELD), (ME, 0, 3, HELD)], now_ms=T0)
    assert hub.receipt_for(ME).dest == "national"
    assert hub.gaps() == {ME: {0: ((2, 2),)}}


def test_author_and_destination_agree_through_a_receipt(db_url: str, tmp_path, opened: list[Store]) -> None:  # type: ignore[no-untyped-def]
    author = _open(db_url, ME, opened)
    dest = _open(f"sqlite:///{tmp_path / 'dest.db'}", "province-44", opened)
    for seq in range(1, 11):
        chain = author.assign_counters(["44"])
        author.note_owed(chain, delta_id=f"{seq:064x}", seq=seq, now_ms=T0 + seq)
        if seq != 5:  # a hub dropped the fifth
            dest.note_delivered(ME, 0, chain["44"], HELD, now_ms=T0 + 100 + seq)
    assert dest.gaps() == {ME: {0: ((5, 5),)}}
    assert author.take_receipt(dest.receipt_for(ME), at_ms=T0 + 200, now_ms=T0 + 300) == 9
    assert [(e.n, e.seq) for e in author.owed_to("44")] == [(5, 5)]
