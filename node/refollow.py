"""Followers brought back to their person after received changes: the move race.

How this works. A node that writes a person's move rewrites, in the same batch, the
records that follow the person (runtime.follow), but only those it holds. A service added
at the household province (65) at about the moment the residence province (44) records
a move to 11 still carries residence 44: 65 wrote it before the move reached it, and 44
never held it, so 11 would never receive it. So when a province node has committed a
received batch (``Replica.after_ingest``), it looks at the records whose shown routing
fields that batch changed here (``IngestResult.rerouted``): every person whose household
or residence changed, and every follower that is new here or now routes elsewhere. For
each such person that it holds, that it is involved in (its household or residence
province as shown here) and that has followers held here differing from the person, it
writes, as itself and signed like any local write, an update bringing those followers
to the person's provinces (``RecordService.refollow``). The update routes to the old
and the new provinces alike, so the new residence receives the record.

Every writer writes the person's shown values, so two provinces repairing the same
record at once write the same values: no conflict, and the replicas converge. Nothing
follows for most changes, so the cost is a comparison per received record and a lookup
per moved person. Hubs never install this (only a province writes). A failure is logged
by record id only and never fails the ingest: the batch is committed and acknowledged,
and the follower is repaired by the next change to the person or to it.
"""

from __future__ import annotations

import logging
from typing import Sequence

from core.errors import SyncError
from core.identity import Identity
from core.kinds import get_kind
from core.record import RecordState
from runtime import follow
from runtime.records import RecordService

log = logging.getLogger("yipanqi.refollow")


def people(rerouted: Sequence[tuple[RecordState | None, RecordState]]) -> list[str]:
    """Ids of the persons to look at: moved here (not new here), or with a follower rerouted here."""
    out: dict[str, None] = {}
    for prior, state in rerouted:
        if state.kind == "person":
            if prior is not None:
                out[state.record_id] = None
        elif get_kind(state.kind).follows_person:
            person_id = state.values().get("person_id")
            if isinstance(person_id, str):
                out[person_id] = None
    return list(out)


class Refollow:
    """``Replica.after_ingest`` for a province node (see the module header)."""

    def __init__(self, records: RecordService) -> None:
        self.records = records
        province = Identity.parse(records.replica.identity).province
        if province is None:
            raise ValueError(f"{records.replica.identity}: only a province node repairs followers")
        self.province = province

    def __call__(self, rerouted: Sequence[tuple[RecordState | None, RecordState]]) -> int:
        """Repair what the batch calls for; returns the followers written (never raises)."""
        due: list[str] = []
        try:
            store = self.records.replica.store
            for person_id in people(rerouted):
                person = follow.involved(store.get("person", person_id), self.province)
                if person is not None and follow.stale(store, person_id, person):
                    due.append(person_id)
            if not due:
                return 0
            written = self.records.refollow(due)
        except Exception as err:  # noqa: BLE001 - the batch is committed: never fail its ingest
            log.warning("could not bring the followers of person %s to their person's provinces: %s",
                        ", ".join(due) or "(checking)", _reason(err))
            return 0
        if written:
            log.info("rewrote %d followers of person %s to their person's provinces: %s", len(written),
                     ", ".join(due), ", ".join(f"{s.kind} {s.record_id}" for s in written))
        return len(written)


def _reason(err: Exception) -> str:
    """What a log line may say: a SyncError's log text (field and rule, never a value), else the
    error's type only (a database error's text may quote the values it was given)."""
    return err.log_text if isinstance(err, SyncError) else type(err).__name__
