"""The v2 baseline: one signed create carrying a record's v1 state (docs/design/v2-wire.md, section 6).

How this works. Under v1 a record's history is a chain of whole-state changes; the v2 core
reads deltas only. The upgrade (``yipanqi upgrade v2``, on a drained federation) gives each
record one *baseline*: a create marked ``legacy`` in its signed body, carrying the shown value
of every field of the record as it stands (``_deleted`` included, and the fields other
provinces wrote: it is the legacy state), signed by the province its household field names
(``Rules.baseline_by``). core.graph holds a baseline only from that province and only as its
record's first delta; every later delta depends on it, so each replica's v2 history of the
record starts from the values its v1 history ended with, and reads stay equal.

A record with an open conflict shows two values for a field, and a create carries one: it
is left out (``decide`` says so) until an operator settles it with ``conflicts resolve`` and
the upgrade runs again, so the upgrade loses no version.

Pure: the store picks the records and writes what this module decides.
"""

from __future__ import annotations

from collections.abc import Callable

from core.delta import Delta
from core.graph import RecordGraph, Rules
from core.hlc import Timestamp
from core.record import RecordState

WRITE, ELSEWHERE, CONFLICTED = "write", "elsewhere", "conflicted"


def author(state: RecordState, rules: Rules) -> str | None:
    """The province that signs the baseline of ``state``: the one its ``baseline_by`` field shows."""
    if rules.baseline_by is None:
        return None
    shown = state.winner(rules.baseline_by)
    return shown.value if shown is not None and isinstance(shown.value, str) else None


def values(state: RecordState) -> dict[str, object]:
    """What the baseline carries: the shown value of every field, ``_deleted`` included."""
    return {name: versions[0].value for name, versions in sorted(state.fields.items()) if versions}


def decide(state: RecordState, rules: Rules, province: str) -> str:
    """What ``province`` does with a record it holds with v1 history only: WRITE its baseline,
    leave it to the province that signs it (ELSEWHERE), or leave it until its open conflicts
    are settled (CONFLICTED: one create cannot carry two values of a field)."""
    if author(state, rules) != province:
        return ELSEWHERE
    if state.conflicts():
        return CONFLICTED
    return WRITE


def write(graph: RecordGraph, state: RecordState, *, origin: str, seq: int, at: Timestamp, operator: str | None,
          salt: Callable[[], bytes] | None = None) -> tuple[str, Delta, bytes]:
    """Build and hold the baseline of ``state`` in its (empty) ``graph``: (id, delta, body to sign).
    Raises ValueError when the graph would not hold it (it has deltas; ``origin`` does not sign it)."""
    if graph.held:
        raise ValueError(f"legacy: {state.kind} {state.record_id} already has v2 deltas")
    return graph.write(values(state), origin=origin, epoch=0, seq=seq, at=at, op="create", operator=operator,
                       salt=salt, legacy=True)
