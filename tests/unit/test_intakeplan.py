"""The pure intake plan (core.intakeplan): dedup by digest, equivocation kept and reported,
clock observation bounded by the lead limit. Properties over random batches, plus examples."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from core import hlc
from core.intakeplan import Arrival, Twins, plan

LEAD = 24 * 3600 * 1000
NOW = 1_700_000_000_000
ME = "province-45"

origins = st.sampled_from(["province-11", "province-44", "hub-pearl"])
times = st.builds(hlc.Timestamp, st.integers(NOW - 10_000, NOW + 2 * LEAD), st.integers(0, 5), origins)


def _arrival(origin: str, seq: int, variant: int, at: hlc.Timestamp) -> Arrival:
    # A digest names its origin and seq (the signed body holds them); variants are equivocation.
    return Arrival(origin, seq, hashlib.sha256(f"{origin}/{seq}/{variant}".encode()).digest(), at)


arrivals = st.lists(st.builds(_arrival, origins, st.integers(1, 3), st.integers(0, 2), times), max_size=12)
clocks = st.builds(hlc.Timestamp, st.integers(NOW - 10_000, NOW + 10_000), st.integers(0, 5), st.just(ME))


def _held(draw_from: list[Arrival]) -> dict[tuple[str, int], frozenset[bytes]]:
    out: dict[tuple[str, int], set[bytes]] = {}
    for a in draw_from:
        out.setdefault((a.origin, a.seq), set()).add(a.digest)
    return {k: frozenset(v) for k, v in out.items()}


def _run(batch: list[Arrival], held: dict, clock: hlc.Timestamp):  # type: ignore[no-untyped-def]
    return plan(batch, held, clock, now_ms=NOW, lead_ms=LEAD, node=ME)


def _summary(batch: list[Arrival], p) -> tuple:  # type: ignore[no-untyped-def]
    return (frozenset(batch[i].digest for i in p.fresh), len(p.fresh), len(p.duplicates), p.twins)


@settings(max_examples=150, deadline=None)
@given(arrivals, arrivals, clocks, st.randoms(use_true_random=False))
def test_the_plan_does_not_depend_on_the_order_of_the_batch(before, batch, clock, rnd) -> None:  # type: ignore[no-untyped-def]
    held = _held(before)
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    assert _summary(batch, _run(batch, held, clock)) == _summary(shuffled, _run(shuffled, held, clock))


@settings(max_examples=150, deadline=None)
@given(arrivals, arrivals, clocks)
def test_every_arrival_is_fresh_or_a_duplicate_and_duplicates_are_never_fresh(before, batch, clock) -> None:  # type: ignore[no-untyped-def]
    held = _held(before)
    p = _run(batch, held, clock)
    assert sorted(p.fresh + p.duplicates) == list(range(len(batch)))
    held_digests = {d for ds in held.values() for d in ds}
    fresh = [batch[i].digest for i in p.fresh]
    assert len(fresh) == len(set(fresh))  # each new digest once
    assert not set(fresh) & held_digests  # nothing already held is fresh
    assert set(fresh) == {a.digest for a in batch} - held_digests  # every new digest is
    for i in p.duplicates:
        d = batch[i].digest
        assert d in held_digests or d in {batch[j].digest for j in p.fresh if j < i}


@settings(max_examples=150, deadline=None)
@given(arrivals, arrivals, clocks)
def test_equivocation_is_every_seq_with_two_digests_that_the_batch_adds_to(before, batch, clock) -> None:  # type: ignore[no-untyped-def]
    held = _held(before)
    p = _run(batch, held, clock)
    everything = _held(before + batch)
    added = {(batch[i].origin, batch[i].seq) for i in p.fresh}
    expected = tuple(Twins(o, s, everything[(o, s)]) for o, s in sorted(added) if len(everything[(o, s)]) > 1)
    assert p.twins == expected
    # Applying the batch twice adds nothing: the second time all is duplicate, no new twins.
    again = _run(batch, everything, p.clock)
    assert again.fresh == () and again.twins == ()


@settings(max_examples=150, deadline=None)
@given(arrivals, arrivals, clocks)
def test_the_clock_moves_past_every_fresh_time_within_the_lead_and_never_back(before, batch, clock) -> None:  # type: ignore[no-untyped-def]
    p = _run(batch, _held(before), clock)
    assert p.clock >= clock and p.clock.node == ME
    for i in p.fresh:
        at = batch[i].at
        if at.wall_ms <= NOW + LEAD:
            assert (p.clock.wall_ms, p.clock.logical) > (at.wall_ms, at.logical)
        else:  # far ahead: merged, but our clock is not dragged along
            assert p.clock.wall_ms < at.wall_ms
    if not p.fresh:
        assert p.clock == clock


def test_two_changes_under_one_seq_are_both_fresh_and_reported() -> None:
    at = hlc.Timestamp(NOW, 0, "province-44")
    a, b = Arrival("province-44", 7, b"a" * 32, at), Arrival("province-44", 7, b"b" * 32, at)
    p = _run([a, b, a], {}, hlc.Timestamp(0, 0, ME))
    assert (p.fresh, p.duplicates) == ((0, 1), (2,))
    assert p.twins == (Twins("province-44", 7, frozenset({b"a" * 32, b"b" * 32})),)
    # One arriving after the other was logged: the same.
    p = _run([b], {("province-44", 7): frozenset({b"a" * 32})}, hlc.Timestamp(0, 0, ME))
    assert p.fresh == (0,) and p.twins == (Twins("province-44", 7, frozenset({b"a" * 32, b"b" * 32})),)
    # An honest resend of a held change: a duplicate, no twins.
    p = _run([a], {("province-44", 7): frozenset({b"a" * 32})}, hlc.Timestamp(0, 0, ME))
    assert (p.fresh, p.duplicates, p.twins) == ((), (0,), ())
