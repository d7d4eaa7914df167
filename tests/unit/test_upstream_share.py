"""hub.share: each origin's share of a regional hub's upstream queue."""

from __future__ import annotations

import threading

from hub.share import UpstreamShare, upstream_up


def store(share: UpstreamShare, origin: str, upto: int, count: int) -> bool | None:
    """What the hub's Push handler does with one batch: take the turn, store, count, end the turn."""
    held = share.take_turn(origin, lambda: True)
    share.appended(origin, upto, count)
    share.end_turn(origin)
    return held


def test_an_origin_at_its_share_is_held_until_the_upstream_acks_its_changes() -> None:
    share = UpstreamShare(lambda: True, share=1000)
    assert store(share, "province-44", 10, 600) is False
    assert store(share, "province-45", 11, 1) is False
    assert store(share, "province-44", 20, 400) is False  # 600 waiting: under its share, so stored
    assert share.pending("province-44") == 1000 and share.pending("province-45") == 1

    released = threading.Event()
    result: list[bool | None] = []

    def pusher() -> None:
        result.append(store(share, "province-44", 30, 500))
        released.set()

    t = threading.Thread(target=pusher, daemon=True)
    t.start()
    assert store(share, "province-45", 31, 1) is False  # another origin is never held for 44
    assert not released.wait(0.3)
    share.acked(15)  # the first 600 are up there: 400 left
    assert released.wait(5) and result == [True]
    t.join(5)
    assert share.pending("province-44") == 900 and share.pending("province-45") == 1
    assert share.report()["province-44"] == {"waiting": 900, "held": 1}


def test_two_streams_of_one_origin_store_one_batch_at_a_time() -> None:
    """An origin cannot pass its share by n batches at once on n streams: each waits its turn."""
    share = UpstreamShare(lambda: True, share=1000)
    assert share.take_turn("province-44", lambda: True) is False  # stream 1 is storing a batch
    second: list[bool | None] = []
    t = threading.Thread(target=lambda: second.append(share.take_turn("province-44", lambda: True)), daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive()  # stream 2 waits for stream 1's batch to be counted
    share.appended("province-44", 10, 1000)
    share.end_turn("province-44")
    t.join(0.3)
    assert t.is_alive()  # and now 44 is at its share
    share.acked(10)
    t.join(5)
    assert second == [True]


def test_a_held_call_that_ends_stores_nothing() -> None:
    share = UpstreamShare(lambda: True, share=10)
    store(share, "province-44", 5, 10)
    alive = [True]
    out: list[bool | None] = []
    t = threading.Thread(target=lambda: out.append(share.take_turn("province-44", lambda: alive[0])), daemon=True)
    t.start()
    t.join(0.2)
    alive[0] = False
    t.join(5)
    assert out == [None]
    assert store(share, "province-45", 6, 1) is False  # and the ended call holds no turn


def test_no_share_is_enforced_while_the_upstream_is_down() -> None:
    up = [False]
    share = UpstreamShare(lambda: up[0], share=10)
    assert store(share, "province-44", 5, 50) is False
    assert store(share, "province-44", 6, 50) is False  # nothing moves up: provinces keep exchanging
    up[0] = True
    assert share.take_turn("province-44", lambda: False) is None  # up again: held (this call ended)


def test_changes_already_acknowledged_upstream_are_not_counted() -> None:
    share = UpstreamShare(lambda: True, share=10)
    share.acked(100)
    share.appended("province-44", 90, 50)  # the upstream stream took them before we counted them
    assert share.pending("province-44") == 0
    share.acked(50)  # an older ack (a batch resent after a reconnect) moves nothing back
    share.appended("province-44", 120, 5)
    assert share.pending("province-44") == 5


def test_a_reconnect_is_not_an_outage() -> None:
    assert upstream_up("national", None, now_ms=10**6)
    assert upstream_up(None, 10**6, now_ms=10**6 + 29_000)  # down 29 s: reconnecting, still shared
    assert not upstream_up(None, 10**6, now_ms=10**6 + 31_000)  # down 31 s: an outage, the region exchanges freely
