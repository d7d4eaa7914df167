"""Record state: a multi-value register per field, so merge always converges.

How this works. A record is (kind, id, fields). Each field holds the set of
its *surviving versions*: a version is (value, vector clock, HLC timestamp).
A write by node N stamps every field it sets with the record's clock
incremented at N, so the new versions dominate everything N has seen.
Merging two states takes, per field, the union of versions and drops every
version whose clock is strictly before another's. "Maximal elements of the
union" is commutative, associative and idempotent, so replicas that have
merged the same changes, in any order and with any duplicates, are equal.

Conflicts. When a field keeps versions with different values, they were
written concurrently. The shown value (the winner) is picked by a fixed
rule: the greatest (HLC timestamp, writer node id, canonical value bytes);
the others stay as an open conflict until someone writes the field again
(settling writes one value with a clock that dominates all of them).

Deletes. The reserved field ``_deleted`` is a register like any other: a
delete writes ``true``, every update writes ``false``. A delete concurrent
with an update is therefore a conflict an operator can see and settle, and
tombstones merge by exactly the same rules. Tombstones keep their fields so
nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from core import canonical
from core.clock import Order, VectorClock
from core.errors import Malformed
from core.hlc import Timestamp

DELETED = "_deleted"


@dataclass(frozen=True, slots=True)
class Version:
    value: object
    clock: VectorClock
    at: Timestamp

    def rank(self) -> tuple[int, int, str, bytes]:
        return (self.at.wall_ms, self.at.logical, self.at.node, canonical.dumps(self.value))

    def to_json(self) -> dict[str, object]:
        return {"v": self.value, "c": self.clock.to_json(), "t": self.at.to_json()}

    @classmethod
    def from_json(cls, obj: object, path: str) -> "Version":
        if not isinstance(obj, dict) or set(obj) != {"v", "c", "t"}:
            raise Malformed(f"{path}: a version is an object with keys v, c, t")
        # Name the key inside the state: the bare "clock: ..." / "at: ..." messages
        # would otherwise point at the change's top-level "at" key.
        try:
            clock = VectorClock.from_json(obj["c"])
        except Malformed as exc:
            raise Malformed(f"{path}.c: {exc}") from None
        try:
            at = Timestamp.from_json(obj["t"])
        except Malformed as exc:
            raise Malformed(f"{path}.t: {exc}") from None
        return cls(obj["v"], clock, at)


def _maximal(versions: Iterable[Version]) -> tuple[Version, ...]:
    """The versions no other version strictly dominates, in canonical order."""
    unique = {(v.rank(), v.clock.entries): v for v in versions}
    pool = list(unique.values())
    keep = [v for v in pool if not any(v.clock.compare(w.clock) is Order.BEFORE for w in pool)]
    keep.sort(key=lambda v: (v.rank(), v.clock.entries), reverse=True)
    return tuple(keep)


@dataclass(frozen=True, slots=True)
class RecordState:
    kind: str
    record_id: str
    fields: Mapping[str, tuple[Version, ...]] = field(default_factory=dict)

    # -- reading -----------------------------------------------------------
    @property
    def clock(self) -> VectorClock:
        clock = VectorClock()
        for versions in self.fields.values():
            for v in versions:
                clock = clock.merge(v.clock)
        return clock

    def winner(self, name: str) -> Version | None:
        versions = self.fields.get(name)
        return versions[0] if versions else None  # kept sorted winner-first

    def values(self) -> dict[str, object]:
        """The shown record: each field's winning value (no reserved fields)."""
        return {k: vs[0].value for k, vs in sorted(self.fields.items()) if k != DELETED and vs}

    @property
    def deleted(self) -> bool:
        w = self.winner(DELETED)
        return bool(w and w.value is True)

    def conflicts(self) -> dict[str, tuple[Version, ...]]:
        """Fields whose surviving versions disagree, winner first."""
        out = {}
        for name, versions in sorted(self.fields.items()):
            distinct = {canonical.dumps(v.value) for v in versions}
            if len(distinct) > 1:
                out[name] = versions
        return out

    def candidate_values(self) -> Iterable[tuple[str, object]]:
        """Every (field, value) any surviving version holds, for routing."""
        for name, versions in self.fields.items():
            for v in versions:
                yield name, v.value

    # -- changing ----------------------------------------------------------
    def merge(self, other: "RecordState") -> "RecordState":
        if (self.kind, self.record_id) != (other.kind, other.record_id):
            raise ValueError("cannot merge states of different records")
        names = self.fields.keys() | other.fields.keys()
        merged = {n: _maximal(self.fields.get(n, ()) + other.fields.get(n, ())) for n in names}
        return RecordState(self.kind, self.record_id, merged)

    def write(self, values: Mapping[str, object], *, node: str, at: Timestamp, delete: bool = False) -> "RecordState":
        """A local write by ``node``: every given field gets one version that dominates all it has seen."""
        clock = self.clock.increment(node)
        fields = dict(self.fields)
        for name, value in values.items():
            if name == DELETED:
                raise ValueError(f"{DELETED} is reserved")
            fields[name] = (Version(value, clock, at),)
        fields[DELETED] = (Version(bool(delete), clock, at),)
        return RecordState(self.kind, self.record_id, fields)

    # -- serialisation ------------------------------------------------------
    def to_json(self) -> dict[str, object]:
        return {name: [v.to_json() for v in vs] for name, vs in sorted(self.fields.items())}

    @classmethod
    def from_json(cls, kind: str, record_id: str, obj: object) -> "RecordState":
        if not isinstance(obj, dict):
            raise Malformed("state: must be an object of field -> versions")
        fields: dict[str, tuple[Version, ...]] = {}
        for name, versions in obj.items():
            if not isinstance(versions, list) or not versions:
                raise Malformed(f"state.{name}: must be a non-empty list of versions")
            fields[name] = _maximal(Version.from_json(v, f"state.{name}") for v in versions)
        return cls(kind, record_id, fields)

    def to_bytes(self) -> bytes:
        return canonical.dumps(self.to_json())


def empty(kind: str, record_id: str) -> RecordState:
    return RecordState(kind, record_id, {})
