"""Hybrid logical clock timestamps.

An HLC timestamp is (wall milliseconds, logical counter, node id). It never
goes backwards on a node, it moves past every timestamp the node has seen, and
it stays close to physical time. Timestamps only break ties between concurrent
writes; causality is the vector clock's job, so a node whose wall clock is
hours off can make its concurrent writes win ties but cannot reorder history.
The caller passes ``now_ms`` in; this module never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import Malformed


# Wall times are stored as 64-bit signed integers (log.at_ms); a peer's timestamp beyond that
# would fail the insert of the whole batch it came in, on every retry.
MAX_WALL_MS = 2**63
MAX_LOGICAL = 2**63  # as wall_ms: a bound keeps a peer's counter from growing past what stores and encodes


@dataclass(frozen=True, order=True, slots=True)
class Timestamp:
    wall_ms: int
    logical: int
    node: str

    def to_json(self) -> list[object]:
        return [self.wall_ms, self.logical, self.node]

    @classmethod
    def from_json(cls, obj: object) -> "Timestamp":
        if (
            not isinstance(obj, list)
            or len(obj) != 3
            or type(obj[0]) is not int
            or type(obj[1]) is not int
            or not isinstance(obj[2], str)
            or not 0 <= obj[0] < MAX_WALL_MS
            or not 0 <= obj[1] < MAX_LOGICAL
        ):
            raise Malformed("at: must be [0 <= wall_ms < 2**63, 0 <= logical < 2**63, node]")
        return cls(obj[0], obj[1], obj[2])


def tick(last: Timestamp | None, now_ms: int, node: str) -> Timestamp:
    """Timestamp for a local event."""
    if last is None or now_ms > last.wall_ms:
        return Timestamp(now_ms, 0, node)
    return _next(last.wall_ms, last.logical, node)


def _next(wall: int, logical: int, node: str) -> Timestamp:
    """The timestamp just after (wall, logical). A peer may have pushed the logical part to
    its bound; then time moves on by a millisecond instead, which still orders after it."""
    if logical + 1 >= MAX_LOGICAL:
        return Timestamp(wall + 1, 0, node)
    return Timestamp(wall, logical + 1, node)


def observe(last: Timestamp | None, remote: Timestamp, now_ms: int, node: str) -> Timestamp:
    """Timestamp after receiving ``remote``: later than both it and ``last``."""
    wall = max(now_ms, remote.wall_ms, last.wall_ms if last else 0)
    logical = -1
    if last is not None and last.wall_ms == wall:
        logical = last.logical
    if remote.wall_ms == wall:
        logical = max(logical, remote.logical)
    return _next(wall, logical, node)
