"""core.session: the window both change streams use (runtime.link Push, hub.federation Pull).

Properties drive a Sender against a model peer over an ordered stream that may break at any
point: acks never pass what was sent, nothing is skipped, at most ``window`` batches are in
flight, and after a break the next session starts at the acknowledged cursor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.session import Receiver, Sender


def test_window_fills_and_acks_release_in_order() -> None:
    s = Sender(10, 2)
    assert s.has_room() and s.idle
    s.send(12)
    s.send(15)
    assert not s.has_room() and s.in_flight == 2 and s.position == 15 and s.sent == 15
    with pytest.raises(ValueError, match="window is full"):
        s.send(20)
    assert s.ack(12) == 12 and s.acked == 12 and s.has_room()
    assert s.ack(12) is None  # a duplicate ack releases nothing
    assert s.ack(15) == 15 and s.idle


def test_an_ack_beyond_what_was_sent_or_before_it_moves_nothing() -> None:
    s = Sender(0, 4)
    assert s.ack(5) is None and s.acked == 0  # nothing in flight: a hostile peer cannot move us on
    s.send(3)
    assert s.ack(9) is None and s.acked == 0 and s.in_flight == 1
    assert s.ack(0) is None  # older than anything in flight
    assert s.ack(3) == 3


def test_an_ack_releases_every_batch_up_to_its_cursor() -> None:
    s = Sender(0, 4)
    for c in (1, 2, 3):
        s.send(c)
    assert s.ack(2) == 2 and s.in_flight == 1 and s.acked == 2


def test_skip_moves_the_ack_only_when_nothing_is_in_flight() -> None:
    s = Sender(0, 4)
    assert s.skip(5) and s.acked == 5 and s.position == 5
    s.send(7)
    assert not s.skip(9) and s.acked == 5 and s.position == 9
    with pytest.raises(ValueError, match="behind"):
        s.skip(8)
    assert s.ack(7) == 7 and s.position == 9


def test_send_must_move_past_the_position() -> None:
    s = Sender(4, 4)
    with pytest.raises(ValueError, match="does not move past 4"):
        s.send(4)
    with pytest.raises(ValueError, match="window: must be at least 1"):
        Sender(0, 0)


def test_byte_window_as_the_hub_pull_uses_it() -> None:
    s = Sender(0, 4, max_bytes=1000, min_room=100)
    assert s.budget(600) == 600  # alone on the stream: a full batch, whatever the byte window
    s.send(1, 600)
    assert s.has_room() and s.budget(600) == 400 and s.bytes_in_flight == 600
    s.send(2, 350)
    assert not s.has_room()  # 950 in flight: less than min_room free
    s.ack(1)
    assert s.has_room() and s.bytes_in_flight == 350


def test_receiver_acks_what_it_stored_and_skips_caught_up_markers() -> None:
    r = Receiver(7, 4)
    assert r.subscribe() == (7, 4)
    assert not r.takes(True) and r.takes(False)
    assert r.stored(12) == 12 and r.cursor == 12 and r.subscribe() == (12, 4)


# -- properties ---------------------------------------------------------------------------
# A step: ("write", n) appends n entries to the sender's log; ("deliver",) the peer takes the
# oldest batch on the wire and acks it; ("ack",) the oldest ack reaches the sender; ("send",)
# the sender sends what it may; ("break",) the stream breaks: everything on the wire is lost.
steps = st.lists(st.one_of(st.tuples(st.just("write"), st.integers(1, 5)), st.just(("deliver",)),
                           st.just(("ack",)), st.just(("send",)), st.just(("break",)),
                           st.tuples(st.just("filtered"), st.integers(1, 3))), max_size=80)


@settings(max_examples=300, deadline=None)
@given(steps=steps, window=st.integers(1, 4), batch=st.integers(1, 4))
def test_over_a_breaking_stream_nothing_is_skipped_and_acks_never_pass_what_was_sent(
        steps: list[tuple], window: int, batch: int) -> None:
    log: list[int] = []  # cursors of entries the sender holds for the peer (filtered ones are not here)
    end = 0  # the sender's log end (filtered entries take positions too)
    durable_ack = 0  # what the sender persisted from acks (its store's cursor)
    held: set[int] = set()  # entries the peer stored
    receiver = Receiver(0, window)
    sender = Sender(durable_ack, window)
    wire: list[tuple[int, list[int]]] = []  # batches on the way: (cursor, entries)
    acks: list[int] = []

    def send() -> None:
        while sender.has_room():
            after = [c for c in log if c > sender.position]
            if not after:
                if end > sender.position and sender.skip(end):
                    nonlocal durable_ack
                    durable_ack = end
                return
            chunk = after[:batch]
            # the read scans up to the last entry it returns, or to the log end when it returned all
            pos = chunk[-1] if len(after) > batch else end
            sender.send(pos)
            wire.append((pos, chunk))

    for step in steps:
        if step[0] == "write":
            for _ in range(step[1]):
                end += 1
                log.append(end)
        elif step[0] == "filtered":
            end += step[1]
        elif step[0] == "send":
            send()
        elif step[0] == "deliver" and wire:
            cursor, chunk = wire.pop(0)
            assert receiver.takes(False)
            held.update(chunk)
            acks.append(receiver.stored(cursor))
        elif step[0] == "ack" and acks:
            acked = sender.ack(acks.pop(0))
            assert acked is not None  # an honest, ordered peer's ack always releases a batch
            durable_ack = acked
        elif step[0] == "break":
            wire.clear()
            acks.clear()
            # The next session starts at the durable acknowledged cursor: resent from there.
            sender = Sender(durable_ack, window)
            assert sender.position == durable_ack
        assert sender.acked <= sender.sent <= end
        assert sender.in_flight <= window
        # Nothing acknowledged is missing at the peer: everything up to the durable ack is held.
        assert all(c in held for c in log if c <= durable_ack)
    # Heal: no more breaks; the acks on their way arrive, then every entry reaches the peer.
    for cursor in acks:
        assert sender.ack(cursor) is not None
    for _ in range(len(log) + 2):
        send()
        while wire:
            cursor, chunk = wire.pop(0)
            held.update(chunk)
            sender.ack(receiver.stored(cursor))
    assert held == set(log)
    assert sender.idle and sender.acked == sender.sent


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 600), min_size=1, max_size=40), acks_every=st.integers(1, 4))
def test_bytes_in_flight_stay_within_the_window_unless_one_batch_alone_is_more(sizes: list[int],
                                                                              acks_every: int) -> None:
    s = Sender(0, 4, max_bytes=1000, min_room=100)
    cursor = 0
    for i, size in enumerate(sizes):
        while not s.has_room():
            assert s.ack(_oldest(s)) is not None
        size = min(size, s.budget(600))
        cursor += 1
        s.send(cursor, size)
        assert s.bytes_in_flight <= 1000 or s.in_flight == 1
        if i % acks_every == 0:
            s.ack(_oldest(s))
    assert s.acked <= s.sent == cursor


def _oldest(s: Sender) -> int:
    return s._flight[0][0]
