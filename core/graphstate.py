"""The v1-shaped record state that a v2 history makes (docs/design/v2-wire.md, section 6).

How this works. Everything above the sync core reads records as a
``core.record.RecordState``: per field, its surviving versions, each with a
vector clock. Under v2 no peer sends a clock; the receiver derives one for
every delta it holds from the dependency graph alone:

    clock(d)[o] = the number of deltas by ``o`` among d and its ancestors

If each author's deltas on a record form a chain (which core.graph enforces:
a delta that skips its author's earlier one is backdated and counts for
nothing), then ``a`` is an ancestor of ``b`` exactly when clock(a) < clock(b),
so the v1 merge rule ("drop versions another strictly dominates") and the
graph's survivors agree, and a conflict in one is a conflict in the other. An
equivocating author breaks the chain; the graph's survivors stay the truth
and the state is built from them as they are (never re-filtered by clocks), so
the two can only differ in how the clocks of an equivocator's twins compare.

Pure: a function of the graph's held deltas. Status: the bridge for wiring v2
into the store (records stay stored, projected and shown as RecordState).
"""

from __future__ import annotations

from core.clock import VectorClock
from core.graph import WITHHELD, RecordGraph
from core.record import RecordState, Version


def clocks(graph: RecordGraph) -> dict[str, VectorClock]:
    """The derived vector clock of every held delta."""
    held = graph.held
    out: dict[str, VectorClock] = {}
    for did in held:
        counts: dict[str, int] = {}
        for a in graph.ancestors(did) | {did}:
            origin = held[a].origin
            counts[origin] = counts.get(origin, 0) + 1
        out[did] = VectorClock.of(counts)
    return out


def state_of(graph: RecordGraph) -> RecordState:
    """The record the graph's counted deltas make, as a RecordState (winner first per field)."""
    view = graph.view()
    for name, versions in view.fields.items():
        if any(v.value is WITHHELD for v in versions):
            raise ValueError(f"{graph.kind} {graph.record_id}: the surviving value of {name} has not arrived")
    vc = clocks(graph)
    fields = {name: tuple(Version(v.value, vc[v.delta], v.at) for v in versions)
              for name, versions in sorted(view.fields.items())}
    return RecordState(graph.kind, graph.record_id, fields)
