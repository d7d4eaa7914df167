"""Deciding what a change does, without doing any I/O.

``local_write`` turns an operator's edit into a Change; ``authorise`` decides
whether an author may write a record; ``apply`` merges a verified change into
the current state and says what to persist and which conflicts it opened. The
node and hub stores carry these decisions out inside one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from core.change import Change, Head, state_provinces
from core.errors import Unauthorised
from core.hlc import Timestamp
from core.identity import Identity
from core.record import RecordState, _maximal, empty


@dataclass(frozen=True, slots=True)
class Outcome:
    state: RecordState
    changed: bool
    opened: tuple[str, ...]  # fields that are in conflict now and were not before


def local_write(
    current: RecordState | None,
    *,
    kind: str,
    record_id: str,
    values: Mapping[str, object],
    node: str,
    seq: int,
    at: Timestamp,
    op: str,
    operator: str | None,
) -> Change:
    base = current or empty(kind, record_id)
    prior = state_provinces(base) if current is not None else frozenset()
    state = base.write(values, node=node, at=at, delete=(op == "delete"))
    return Change(kind, record_id, node, seq, at, op, operator, prior, state)


def authorise(change: Change | Head, author: str) -> None:
    """A province may write only records that involve it, before or after the change."""
    ident = Identity.parse(author)
    if ident.role != "province":
        raise Unauthorised(f"author {author} is not a province node; only provinces author changes")
    if author != change.origin:
        raise Unauthorised(f"origin claims {change.origin} but the change is signed by {author}")
    if ident.name not in change.routes:
        raise Unauthorised(
            f"{author} may not write {change.kind} {change.record_id}: "
            f"it involves provinces {', '.join(sorted(change.routes)) or 'none'}"
        )


def apply(current: RecordState | None, change: Change) -> Outcome:
    if current is None:
        fast = _apply_new(change)
        if fast is not None:
            return fast
    before = current or empty(change.kind, change.record_id)
    after = before.merge(change.state)
    had = set(before.conflicts())
    opened = tuple(sorted(set(after.conflicts()) - had))
    return Outcome(after, after != before, opened)


def _apply_new(change: Change) -> Outcome | None:
    """``apply`` to a record we do not hold yet, without the merge when it is a no-op.

    Merging into the empty state gives, per field, _maximal(versions), which for
    a single version is the version itself; when that holds for every field (or
    _maximal keeps the very same versions in the same order), the merged state
    equals change.state, field for field and byte for byte, so
    change.state is the result (keeping what it has already cached). It changed
    the record iff it has fields (the empty state has none), and every conflict
    it has was opened (the empty state has none; conflicts() is sorted by name).
    Anything unusual (another record's state, a subclass, a field not in normal
    form) takes the general path.
    """
    state = change.state
    fields = state.fields
    if (type(state) is not RecordState or type(fields) is not dict
            or state.kind != change.kind or state.record_id != change.record_id):
        return None
    for vs in fields.values():
        if type(vs) is not tuple:
            return None
        if len(vs) != 1:  # normalised already (from_json and merge leave it so) iff _maximal keeps it as is
            m = _maximal(vs)
            if len(m) != len(vs) or any(x is not y for x, y in zip(m, vs)):
                return None
    return Outcome(state, bool(fields), tuple(state.conflicts()))
