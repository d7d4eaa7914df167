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
from functools import cached_property
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
        return (self.at.wall_ms, self.at.logical, self.at.node, canonical.scalar_bytes(self.value))


# Decoding and writing build a Version per field per change. The frozen dataclass
# __init__ sets each slot through object.__setattr__; setting the slots directly
# gives the same instance (all three slots set, nothing else) in about half the time.
_new_object = object.__new__
_set_value, _set_clock, _set_at = Version.value.__set__, Version.clock.__set__, Version.at.__set__  # type: ignore[attr-defined, misc]  # the slots' descriptors: mypy sees only instance fields


def _version(value: object, clock: VectorClock, at: Timestamp) -> Version:
    """``Version(value, clock, at)``, faster."""
    v = _new_object(Version)
    _set_value(v, value)
    _set_clock(v, clock)
    _set_at(v, at)
    return v


def _maximal(versions: Iterable[Version]) -> tuple[Version, ...]:
    """The versions no other version strictly dominates, in canonical order."""
    versions = tuple(versions)
    n = len(versions)
    if n == 1:
        return versions
    if n == 2:
        return _maximal2(versions[0], versions[1])
    # Each version's sort key is computed once; a later duplicate replaces an earlier one, as in a dict.
    unique = {(v.rank(), v.clock.entries): v for v in versions}
    pool = list(unique.items())
    keep = [(k, v) for k, v in pool if not any(v.clock.compare(w.clock) is Order.BEFORE for _, w in pool)]
    keep.sort(key=_first, reverse=True)
    return tuple(v for _, v in keep)


def _first(pair: tuple[tuple[tuple[int, int, str, bytes], tuple[tuple[str, int], ...]], Version]) -> tuple:
    return pair[0]


def _maximal2(v: Version, w: Version) -> tuple[Version, ...]:
    """``_maximal`` of exactly two versions (the usual merge of two single-version fields).

    Same result as the general case: if one clock is strictly before the other, the
    keys differ (their clocks do) and only the later survives; otherwise equal keys
    keep the second (dict semantics) and distinct ones are both kept, greatest first.
    """
    order = v.clock.compare(w.clock)
    if order is Order.BEFORE:
        return (w,)
    if order is Order.AFTER:
        return (v,)
    kv = (v.rank(), v.clock.entries)
    kw = (w.rank(), w.clock.entries)
    if kv == kw:
        return (w,)
    return (v, w) if kv > kw else (w, v)


@dataclass(frozen=True)  # no slots: to_bytes is cached on the instance
class RecordState:
    kind: str
    record_id: str
    fields: Mapping[str, tuple[Version, ...]] = field(default_factory=dict)

    # -- reading -----------------------------------------------------------
    # The derived views below are cached on the instance (like _bytes): a state
    # is immutable, and sync asks each of them several times per change. Views
    # returning a dict return a fresh copy, so a caller may still mutate it.
    @cached_property
    def clock(self) -> VectorClock:
        """Pointwise max of every surviving version's clock."""
        acc: dict[str, int] = {}
        seen: set[tuple[tuple[str, int], ...]] = set()
        for versions in self.fields.values():
            for v in versions:
                entries = v.clock.entries
                if entries in seen:  # most fields share their write's clock
                    continue
                seen.add(entries)
                for node, count in entries:
                    if count > acc.get(node, 0):
                        acc[node] = count
        return VectorClock.of(acc)

    def winner(self, name: str) -> Version | None:
        versions = self.fields.get(name)
        return versions[0] if versions else None  # kept sorted winner-first

    def values(self) -> dict[str, object]:
        """The shown record: each field's winning value (no reserved fields)."""
        return dict(self._values)

    @cached_property
    def _values(self) -> dict[str, object]:
        return {k: vs[0].value for k, vs in sorted(self.fields.items()) if k != DELETED and vs}

    @property
    def deleted(self) -> bool:
        vs = self.fields.get(DELETED)
        return bool(vs and vs[0].value is True)

    def conflicts(self) -> dict[str, tuple[Version, ...]]:
        """Fields whose surviving versions disagree, winner first."""
        return dict(self._conflicts)

    @cached_property
    def _conflicts(self) -> dict[str, tuple[Version, ...]]:
        out = {}
        # Only fields holding two or more versions can disagree (usually none: nothing to sort).
        for name, versions in sorted((n, vs) for n, vs in self.fields.items() if len(vs) > 1):
            distinct = {canonical.scalar_bytes(v.value) for v in versions}
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
        mine, theirs = self.fields, other.fields
        merged = {}
        for n in mine.keys() | theirs.keys():
            a, b = mine.get(n, ()), theirs.get(n, ())
            # The same tuple on both sides (a field neither replica has written since
            # they last met) merges to _maximal(a + a), which for one version is a.
            merged[n] = a if a is b and len(a) == 1 and type(a) is tuple else _maximal(a + b)
        return RecordState(self.kind, self.record_id, merged)

    def write(self, values: Mapping[str, object], *, node: str, at: Timestamp, delete: bool = False) -> "RecordState":
        """A local write by ``node``: every given field gets one version that dominates all it has seen."""
        clock = self.clock.increment(node)
        fields = dict(self.fields)
        for name, value in values.items():
            if name == DELETED:
                raise ValueError(f"{DELETED} is reserved")
            fields[name] = (_version(value, clock, at),)
        fields[DELETED] = (_version(bool(delete), clock, at),)
        return RecordState(self.kind, self.record_id, fields)

    # -- serialisation ------------------------------------------------------
    # {"stamps": [[clock, hlc], ...], "fields": {name: [[value, stamp index], ...]}}
    # A write stamps every field it sets with the same (clock, hlc), so each
    # stamp is written once and fields point at it: a third of the bytes and
    # of the encoding work of spelling the clock out per field.
    def to_json(self) -> dict[str, object]:
        # One pass: each version's stamp gets a provisional number, in first-seen order,
        # then the numbers are mapped to positions in the sorted list of distinct stamps
        # (usually already in order: a write's versions share one stamp). Versions of one
        # write share their clock and timestamp objects, so a stamp's key is built once
        # per distinct pair of objects; equal stamps held by different objects share a
        # key, hence an index. (id() is safe: self.fields keeps every object alive.)
        refs: dict[tuple[int, int], int] = {}
        keys: list[tuple[int, int, str, tuple[tuple[str, int], ...]]] = []
        fields: dict[str, list[list[object]]] = {}
        for name, vs in sorted(self.fields.items()):
            rows = []
            for v in vs:
                ref = (id(v.clock), id(v.at))
                p = refs.get(ref)
                if p is None:
                    at = v.at
                    p = refs[ref] = len(keys)
                    keys.append((at.wall_ms, at.logical, at.node, v.clock.entries))
                rows.append([v.value, p])
            fields[name] = rows
        order = sorted(set(keys))
        if order != keys:
            index = {k: i for i, k in enumerate(order)}
            final = [index[k] for k in keys]
            for rows in fields.values():
                for row in rows:
                    row[1] = final[row[1]]  # type: ignore[call-overload]  # row[1] is the int stamp number set above
        return {
            "stamps": [[dict(entries), [wall, logical, node]] for wall, logical, node, entries in order],
            "fields": fields,
        }

    @classmethod
    def from_json(cls, kind: str, record_id: str, obj: object) -> "RecordState":
        return _decode(cls, kind, record_id, obj, False)

    @classmethod
    def from_wire(cls, kind: str, record_id: str, obj: object) -> "RecordState":
        """``from_json`` that also sets the state's bytes straight from ``obj`` when it can.

        When ``obj`` is already in normal form (stamps strictly ascending and all
        used, no zero clock counts, each field's versions as _maximal orders them)
        it is exactly what ``to_json`` would return, value for value, so its
        canonical encoding is ``to_bytes()``, without rebuilding it. (Encoding
        the decoded JSON now costs a fraction of to_json; ``obj`` is not kept.)
        """
        return _decode(cls, kind, record_id, obj, True)

    def to_bytes(self) -> bytes:
        return self._bytes

    @cached_property
    def _bytes(self) -> bytes:
        return canonical.dumps(self.to_json(), checked=False)  # values are canonical by construction


def _decode(cls: type[RecordState], kind: str, record_id: str, obj: object, keep: bool) -> RecordState:
    # A dict has unique keys, so two keys, both the expected ones, is set(obj) == {stamps, fields}.
    if not isinstance(obj, dict) or len(obj) != 2 or "stamps" not in obj or "fields" not in obj:
        raise Malformed("state: must be an object with keys stamps and fields")
    raw_stamps, raw_fields = obj["stamps"], obj["fields"]
    if not isinstance(raw_stamps, list) or not isinstance(raw_fields, dict):
        raise Malformed("state: stamps must be a list and fields an object")
    normal = keep  # whether obj is in normal form (tracked only when keeping it)
    prev = None
    stamps: list[tuple[VectorClock, Timestamp]] = []
    clock_of, at_of = VectorClock.from_json, Timestamp.from_json
    for i, stamp in enumerate(raw_stamps):
        if not isinstance(stamp, list) or len(stamp) != 2:
            raise Malformed(f"state.stamps[{i}]: must be [clock, hlc timestamp]")
        try:
            clock, at = clock_of(stamp[0]), at_of(stamp[1])
        except Malformed as exc:
            raise Malformed(f"state.stamps[{i}]: {exc}") from None
        stamps.append((clock, at))
        if normal:
            key = (at.wall_ms, at.logical, at.node, clock.entries)
            if (prev is not None and key <= prev) or len(clock.entries) != len(stamp[0]):
                normal = False
            prev = key
    n = len(stamps)
    used: set[int] = set()
    version = _version
    new, set_value, set_clock, set_at = _new_object, _set_value, _set_clock, _set_at
    fields: dict[str, tuple[Version, ...]] = {}
    for name, versions in raw_fields.items():
        if not isinstance(versions, list) or not versions:
            raise Malformed(f"state.fields.{name}: must be a non-empty list of versions")
        if len(versions) == 1:  # the usual case; _maximal of one version is the version itself
            pair = versions[0]
            if isinstance(pair, list) and len(pair) == 2:
                i = pair[1]
                if type(i) is int and 0 <= i < n:
                    clock, at = stamps[i]
                    v = new(Version)  # _version(pair[0], clock, at), inline: once per field per change
                    set_value(v, pair[0])
                    set_clock(v, clock)
                    set_at(v, at)
                    fields[name] = (v,)
                    if normal:
                        used.add(i)
                    continue
            raise Malformed(f"state.fields.{name}[0]: must be [value, index into stamps]")
        out = []
        for j, pair in enumerate(versions):
            if (not isinstance(pair, list) or len(pair) != 2 or type(pair[1]) is not int
                    or not 0 <= pair[1] < n):
                raise Malformed(f"state.fields.{name}[{j}]: must be [value, index into stamps]")
            clock, at = stamps[pair[1]]
            out.append(version(pair[0], clock, at))
            if normal:
                used.add(pair[1])
        kept = fields[name] = _maximal(out)
        if normal and (len(kept) != len(out) or any(x is not y for x, y in zip(kept, out))):
            normal = False
    state = cls(kind, record_id, fields)
    if normal and len(used) == n:
        try:
            data = canonical.dumps(obj, checked=False)
        except Exception:  # e.g. a lone surrogate: left to to_bytes(), which raises it when asked, as before
            pass
        else:
            state.__dict__["_bytes"] = data  # what the _bytes property would compute and cache
    return state


def empty(kind: str, record_id: str) -> RecordState:
    return RecordState(kind, record_id, {})
