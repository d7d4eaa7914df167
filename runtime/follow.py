"""Records that follow a person: rewritten with the person's move, in the move's transaction.

How this works: kinds with ``follows_person`` (service, certificate) carry the
person's household and residence provinces as their own routing fields, copied
when they are written. When this node writes a change to a person's household
or residence province, ``edits`` gives one more edit per such record held here
(found by ``person_id`` in the kinds' side tables), setting the person's new
provinces. They go into the same batch as the person's write: one transaction,
one signature, so the new residence province receives the person and their
history together. (Both the household and the current residence province hold
every such record, and only they hold the person to write a move, so the
writer always holds the history.) An edit whose record already agrees, or is
deleted, is left out.

The same edits repair a follower written elsewhere before the move reached its writer
(node.refollow): ``stale`` finds the followers held here that differ from the person, and
``repairs`` gives the batch that brings them to the person's values as read in that batch.
"""

from __future__ import annotations

from typing import Callable, Mapping

from core.errors import LocalError
from core.kinds import KINDS
from core.record import RecordState
from store import projections
from store.store import Edit, Store

Item = tuple[str, str, Edit]

ROUTING = ("household_province", "residence_province")


class Unchanged(LocalError):
    """A follower that already agrees with the person: left out of the batch."""


def kinds() -> list[str]:
    return [k.name for k in KINDS.values() if k.follows_person]


def moves(fields: Mapping[str, object]) -> bool:
    return any(f in fields for f in ROUTING)


def edits(store: Store, person_id: str, person_after: Callable[[], Mapping[str, object] | None]) -> list[tuple[str, str, Edit]]:
    """Edits bringing every follower of ``person_id`` held here to the person's provinces.

    ``person_after`` is read when the edits run, after the person's own edit in the same
    batch: it returns the person's values after the write, or None if that write failed
    (then every follower is left out too).
    """
    out: list[tuple[str, str, Edit]] = []
    for kind in kinds():
        key = projections.key_column(projections.TABLES[kind])
        for row in store.projected(kind, {"person_id": person_id}):
            out.append((kind, row[key], _edit(person_after)))
    return out


def _edit(person_after: Callable[[], Mapping[str, object] | None]) -> Edit:
    def edit(current: RecordState | None) -> tuple[str, Mapping[str, object]]:
        person = person_after()
        if person is None or current is None or current.deleted:
            raise Unchanged("not written")
        shown = current.values()
        changed = {f: person.get(f) for f in ROUTING if person.get(f) is not None and shown.get(f) != person.get(f)}
        if not changed:
            raise Unchanged("already follows")
        return "update", changed
    return edit


def involved(person: RecordState | None, province: str) -> Mapping[str, object] | None:
    """The person's shown values, if ``province`` is its household or residence province here."""
    if person is None or person.deleted:
        return None
    shown = person.values()
    return shown if province in (shown.get(f) for f in ROUTING) else None


def stale(store: Store, person_id: str, person: Mapping[str, object]) -> list[tuple[str, str]]:
    """(kind, id) of the live followers of ``person_id`` held here whose provinces differ from ``person``'s."""
    out = []
    for kind in kinds():
        key = projections.key_column(projections.TABLES[kind])
        for row in store.projected(kind, {"person_id": person_id}):
            state = store.get(kind, row[key])
            if state is None or state.deleted:
                continue
            shown = state.values()
            if any(person.get(f) is not None and shown.get(f) != person.get(f) for f in ROUTING):
                out.append((kind, row[key]))
    return out


def repairs(store: Store, person_id: str, province: str) -> list[Item]:
    """One batch's items bringing the followers of ``person_id`` held here to the person's provinces.

    The first item only reads the person, in the batch's transaction (so a move written here
    at the same moment is never undone), and writes nothing; the followers are rewritten only
    if ``province`` is involved in the person as read then.
    """
    seen: list[Mapping[str, object]] = []

    def read(current: RecordState | None) -> tuple[str, Mapping[str, object]]:
        shown = involved(current, province)
        if shown is not None:
            seen.append(shown)
        raise Unchanged("read only")

    return [("person", person_id, read)] + edits(store, person_id, lambda: seen[0] if seen else None)
