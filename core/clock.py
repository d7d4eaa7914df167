"""Vector clocks: who has seen which writes.

A clock maps node id -> count of that node's writes it reflects. Clocks are
immutable and kept in canonical form (sorted by node id, zero entries dropped)
so that equal histories give byte-identical serialisations.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Mapping

from core.errors import Malformed

# A count is a number of writes: no history reaches 2**63 (the same bound as a change's
# seq). A bound is what keeps one peer from freezing a record: an entry of 10**4300 once
# parsed, merged, and then made every later write of that record fail to encode.
MAX_COUNT = 2**63


class Order(enum.Enum):
    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


@dataclass(frozen=True, slots=True)
class VectorClock:
    entries: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, mapping: Mapping[str, int] | Iterable[tuple[str, int]]) -> "VectorClock":
        items = mapping.items() if isinstance(mapping, (dict, Mapping)) else mapping
        return cls(tuple(sorted((n, c) for n, c in items if c)))

    @classmethod
    def from_json(cls, obj: object) -> "VectorClock":
        if not isinstance(obj, dict):
            raise Malformed("clock: must be an object of node id -> count")
        zero = False
        for node, count in obj.items():
            if not isinstance(node, str) or not node:
                raise Malformed("clock: node ids must be non-empty strings")
            if type(count) is not int or not 0 <= count < MAX_COUNT:
                raise Malformed(f"clock: count for {node!r} must be an integer in 0..2**63-1")
            if not count:
                zero = True
        if zero:
            return cls.of(obj)
        # No zero counts to drop: of()'s canonical form is just the sorted items.
        return cls(tuple(sorted(obj.items())))

    def to_json(self) -> dict[str, int]:
        return dict(self.entries)

    def get(self, node: str) -> int:
        for n, c in self.entries:
            if n == node:
                return c
        return 0

    def increment(self, node: str) -> "VectorClock":
        d = dict(self.entries)
        count = d.get(node, 0) + 1
        if count >= MAX_COUNT:
            raise Malformed(f"clock: count for {node!r} would pass 2**63-1")
        d[node] = count
        return VectorClock.of(d)

    def merge(self, other: "VectorClock") -> "VectorClock":
        d = dict(self.entries)
        for n, c in other.entries:
            if c > d.get(n, 0):
                d[n] = c
        return VectorClock.of(d)

    def compare(self, other: "VectorClock") -> Order:
        a, b = self.entries, other.entries
        if a == b:  # the common case when merging copies of the same write
            return Order.EQUAL
        da, db = dict(a), dict(b)
        less = greater = False
        for n, x in da.items():
            y = db.get(n, 0)
            if x < y:
                less = True
            elif x > y:
                greater = True
        for n, y in db.items():
            if n not in da:  # x is 0 here
                if y > 0:
                    less = True
                elif y < 0:
                    greater = True
        if less and greater:
            return Order.CONCURRENT
        if less:
            return Order.BEFORE
        if greater:
            return Order.AFTER
        return Order.EQUAL

    def __lt__(self, other: "VectorClock") -> bool:  # strictly happened-before
        return self.compare(other) is Order.BEFORE
