"""What to do with a batch of verified changes: the intake plan, decided without I/O.

How this works. Intake (runtime.intake) has already checked each change's signature
and author. What remains is the protocol's bookkeeping, decided here as a pure
function and carried out by the store in one transaction (as raft's ``Ready``):

* A change is identified by the digest of its signed body. One whose digest the
  replica already holds, or that came earlier in the same batch, is a duplicate:
  it changes nothing. Every other change is fresh: logged and merged.
* Two different digests under one (origin, seq) are equivocation: the origin signed
  two different changes with one sequence number. Both are kept as concurrent
  writes (v1 merge is a join of states, so every replica that gets both converges
  whatever the order), and the (origin, seq) is reported with every digest known
  for it, so the store can flag the origin and keep the evidence.
* Our hybrid logical clock observes each fresh change's timestamp, except one
  more than ``lead_ms`` ahead of ``now_ms``: a peer's clock far ahead (broken or
  hostile) must not drag ours along. Its change still merges.

The plan depends only on its inputs: which arrivals are fresh, which duplicates and
which (origin, seq) equivocate do not depend on the order of the batch, except which
copy of a repeated digest counts as the fresh one (the first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

from core import hlc


class Arrival(NamedTuple):  # a tuple: built once per received change on the hot path
    origin: str
    seq: int
    digest: bytes  # sha256 of the signed body, as received
    at: hlc.Timestamp


@dataclass(frozen=True, slots=True)
class Twins:
    """One (origin, seq) the origin signed more than once: every digest known for it."""

    origin: str
    seq: int
    digests: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class IntakePlan:
    fresh: tuple[int, ...]  # indexes into the arrivals to log and merge, in arrival order
    duplicates: tuple[int, ...]  # indexes of arrivals already held (or repeated in the batch)
    twins: tuple[Twins, ...]  # equivocating (origin, seq) that this batch adds a digest to, sorted
    clock: hlc.Timestamp  # our clock after observing the fresh arrivals


def plan(arrivals: Sequence[Arrival], held: Mapping[tuple[str, int], frozenset[bytes] | set[bytes]],
         clock: hlc.Timestamp, *, now_ms: int, lead_ms: int, node: str) -> IntakePlan:
    """The plan for ``arrivals`` given the digests ``held`` per (origin, seq) (only those asked
    for need be present), our ``clock`` and the time ``now_ms``. ``node`` is our identity, for
    the clock."""
    seen: set[bytes] = set()
    fresh: list[int] = []
    duplicates: list[int] = []
    added: dict[tuple[str, int], set[bytes]] = {}
    limit = now_ms + lead_ms
    for i, a in enumerate(arrivals):
        key = (a.origin, a.seq)
        known = held.get(key)
        if a.digest in seen or (known is not None and a.digest in known):
            duplicates.append(i)
            continue
        seen.add(a.digest)
        fresh.append(i)
        added.setdefault(key, set()).add(a.digest)
        if a.at.wall_ms <= limit:
            clock = hlc.observe(clock, a.at, now_ms, node)
    twins = []
    for (origin, seq), new in added.items():
        every = new | set(held.get((origin, seq), ()))
        if len(every) > 1:
            twins.append(Twins(origin, seq, frozenset(every)))
    twins.sort(key=lambda t: (t.origin, t.seq))
    return IntakePlan(tuple(fresh), tuple(duplicates), tuple(twins), clock)


__all__ = ["Arrival", "IntakePlan", "Twins", "plan"]
