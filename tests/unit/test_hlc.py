"""Hybrid logical clocks: monotonic, past everything seen, robust to skewed wall clocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import Malformed
from core.hlc import Timestamp, observe, tick

HOUR = 3_600_000
NODE = "province-44"
OTHER = "province-11"

_now = st.integers(0, 10**13)
_remote = st.builds(Timestamp, st.integers(0, 10**13), st.integers(0, 50), st.sampled_from([OTHER, "province-31", "province-66"]))
_event = st.one_of(
    st.tuples(st.just("local"), _now),
    st.tuples(st.just("remote"), _now, _remote),
)


def test_timestamp_order_is_wall_then_logical_then_node() -> None:
    assert Timestamp(1, 9, "z") < Timestamp(2, 0, "a")
    assert Timestamp(1, 1, "z") < Timestamp(1, 2, "a")
    assert Timestamp(1, 1, "a") < Timestamp(1, 1, "b")


def test_tick_basics() -> None:
    t1 = tick(None, 1000, NODE)
    assert t1 == Timestamp(1000, 0, NODE)
    assert tick(t1, 2000, NODE) == Timestamp(2000, 0, NODE)
    # Same millisecond, or the wall clock stepped back: logical counter moves on.
    assert tick(t1, 1000, NODE) == Timestamp(1000, 1, NODE)
    assert tick(t1, 5, NODE) == Timestamp(1000, 1, NODE)


def test_observe_basics() -> None:
    last = Timestamp(1000, 3, NODE)
    # remote ahead: adopt its wall time, logical past it
    assert observe(last, Timestamp(5000, 7, OTHER), 2000, NODE) == Timestamp(5000, 8, NODE)
    # all at the same wall time: past the larger logical counter
    assert observe(last, Timestamp(1000, 1, OTHER), 1000, NODE) == Timestamp(1000, 4, NODE)
    assert observe(last, Timestamp(1000, 9, OTHER), 1000, NODE) == Timestamp(1000, 10, NODE)
    # local wall clock ahead of both: fresh logical
    assert observe(last, Timestamp(1500, 9, OTHER), 9000, NODE) == Timestamp(9000, 0, NODE)
    assert observe(None, Timestamp(10, 2, OTHER), 5, NODE) == Timestamp(10, 3, NODE)


@given(st.lists(_event, min_size=1, max_size=60))
@settings(max_examples=400, deadline=None)
def test_sequences_are_strictly_monotonic_and_past_everything_seen(events: list[tuple]) -> None:
    last: Timestamp | None = None
    seen_max: Timestamp | None = None
    max_now = 0
    for ev in events:
        if ev[0] == "local":
            new = tick(last, ev[1], NODE)
        else:
            remote = ev[2]
            new = observe(last, remote, ev[1], NODE)
            # strictly later than the remote timestamp, whatever its node id
            assert (new.wall_ms, new.logical) > (remote.wall_ms, remote.logical)
            assert new > remote
            seen_max = remote if seen_max is None else max(seen_max, remote)
        assert new.node == NODE
        if last is not None:
            assert (new.wall_ms, new.logical) > (last.wall_ms, last.logical)
            assert new > last
        if seen_max is not None:
            assert new > seen_max
        # stays close to physical time: never behind the node's own wall clock
        max_now = max(max_now, ev[1])
        assert new.wall_ms >= ev[1]
        # and never invents a wall time nobody reported
        assert new.wall_ms <= max(max_now, seen_max.wall_ms if seen_max else 0)
        # round trips through the wire form
        assert Timestamp.from_json(new.to_json()) == new
        last = new


@given(
    skew_a=st.integers(-6 * HOUR, 6 * HOUR),
    skew_b=st.integers(-6 * HOUR, 6 * HOUR),
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 5000)), min_size=1, max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_skewed_wall_clocks_keep_causal_order(skew_a: int, skew_b: int, steps: list[tuple[bool, int]]) -> None:
    """Two nodes hours apart exchange messages; each message's receipt (and
    every later event) is timestamped after the send, so causality holds."""
    real = 10 * 24 * HOUR
    clocks = {"province-11": skew_a, "province-44": skew_b}
    last: dict[str, Timestamp | None] = {"province-11": None, "province-44": None}
    history: dict[str, list[Timestamp]] = {n: [] for n in clocks}
    for a_sends, advance in steps:
        real += advance
        sender, receiver = ("province-11", "province-44") if a_sends else ("province-44", "province-11")
        sent = tick(last[sender], real + clocks[sender], sender)
        assert all(sent > t for t in history[sender])
        history[sender].append(sent)
        last[sender] = sent
        got = observe(last[receiver], sent, real + clocks[receiver], receiver)
        assert got > sent
        # everything the sender did before sending happened-before the receipt
        assert all(got > t for t in history[sender])
        history[receiver].append(got)
        last[receiver] = got
        after = tick(last[receiver], real + clocks[receiver], receiver)
        assert after > got > sent
        history[receiver].append(after)
        last[receiver] = after


def test_node_hours_behind_still_orders_after_what_it_saw() -> None:
    ahead = tick(None, 100 * HOUR + 5 * HOUR, "province-11")
    behind_now = 100 * HOUR - 5 * HOUR
    got = observe(tick(None, behind_now, "province-44"), ahead, behind_now, "province-44")
    assert got > ahead
    nxt = tick(got, behind_now + 1, "province-44")  # its own clock is still 10 h behind
    assert nxt > got > ahead
    assert nxt.wall_ms == ahead.wall_ms and nxt.logical == got.logical + 1


@pytest.mark.parametrize(
    "bad",
    [
        [1, 0],
        [1, 0, "n", 4],
        [-1, 0, "n"],
        [1, -1, "n"],
        [1.0, 0, "n"],
        [True, 0, "n"],
        [1, False, "n"],
        [1, 0, 5],
        ["1", 0, "n"],
        {"wall_ms": 1, "logical": 0, "node": "n"},
        (1, 0, "n"),
        None,
    ],
)
def test_from_json_rejects(bad: object) -> None:
    with pytest.raises(Malformed, match="at"):
        Timestamp.from_json(bad)


def test_logical_part_is_bounded_on_the_wire() -> None:
    with pytest.raises(Malformed, match="logical"):
        Timestamp.from_json([1, 2**63, "province-11"])
    assert Timestamp.from_json([1, 2**63 - 1, "province-11"]).logical == 2**63 - 1


def test_a_peer_at_the_logical_bound_moves_time_on_instead_of_overflowing() -> None:
    remote = Timestamp(1_000, 2**63 - 1, "province-44")
    after = observe(None, remote, 1_000, "province-11")
    assert after > remote and after.logical < 2**63
    assert Timestamp.from_json([after.wall_ms, after.logical, after.node]) == after
    again = tick(after, 0, "province-11")
    assert again > after and again.logical < 2**63
