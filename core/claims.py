"""Claims: a registration by a province the record does not involve (issue 12).

How this works. Two provinces the record involves (household or residence) that
register the same person write two creates of one key, which merge like any
concurrent writes (core.record). A create by any other province, arriving at a
replica that already holds the record, is a *claim*: the replica keeps it apart
(store.claims), does not merge it, and so nothing it writes afterwards routes to
the claimer. The household province accepts it (its next write merges the
claim's versions, so the record involves the claimer and reaches it) or refuses
it (kept for audit). Later changes of a claimer with an open claim on the record
are held with it. At a replica where a change from elsewhere makes the record
involve the claimer (the acceptance arriving), the claim is merged there too.
There is no automatic acceptance.
"""

from __future__ import annotations

from core.change import Change, state_provinces
from core.identity import Identity
from core.record import RecordState

KIND = "person"


def claimer_province(origin: str) -> str | None:
    try:
        return Identity.parse(origin).province
    except Exception:  # intake has checked the origin; anything else is simply not a province
        return None


def is_claim(current: RecordState | None, change: Change, *, open_claim: bool = False) -> bool:
    """Whether ``change`` is held apart: a create of a held person by an uninvolved province,
    or any change by a province whose claim on the record is still open."""
    if change.kind != KIND or current is None:
        return False
    province = claimer_province(change.origin)
    if province is None or province in state_provinces(current):
        return False
    return open_claim or change.op == "create"


def settled_by(state: RecordState, claimer: str) -> bool:
    """The record now involves the claimer: an acceptance merged the claim."""
    province = claimer_province(claimer)
    return province is not None and province in state_provinces(state)
