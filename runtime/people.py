"""One person, one record on a node: ``person add`` and ``person import`` against the people held.

How this works: a person written with op ``create`` is first looked up by its (validated,
18-character) ID number, through ``Store.people_by_id_number`` only, and in the rows of the same
batch. A person not held is created. A held one is never created twice: when every given field
equals the record the row is *unchanged* (nothing is written); otherwise it is *differing*,
reported with the held person_id and the differing field names, and written as an update of
those fields only when the caller asks (``update``, import's ``--update``). The lookup and the
write run under the service's people lock, so two operators adding the same person at once
still make one record (one process owns a store and is its only local writer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from core.errors import AlreadyHeld, SyncError
from core.kinds import get_kind
from core.person import differing
from core.record import RecordState

if TYPE_CHECKING:
    from runtime.records import RecordService

NEW, UNCHANGED, DIFFERING, UPDATED, WRITTEN, REFUSED = "new", "unchanged", "differing", "updated", "written", "refused"


class Validated(dict):
    """A person's fields as ``validate`` returned them here (a create's id already its key), so
    ``RecordService.prepare`` does not validate them a second time. Built only in this module, from
    validated values: nothing decoded from input is ever of this type."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one row: its outcome, the record it concerns and, for differing or updated
    rows, the field names that differ (never their values)."""

    outcome: str
    record_id: str = ""
    differing: tuple[str, ...] = ()
    error: SyncError | None = None
    state: RecordState | None = None


def add_person(service: "RecordService", record_id: str, fields: Mapping[str, object],
               operator: str | None) -> RecordState:
    """``person add``: the new record, or the held one when every given field equals it; raises
    ``AlreadyHeld`` (naming the record and the differing fields) when some differ."""
    (result,) = write_people(service, [("create", "person", record_id, fields)], operator)
    if result.error is not None:
        raise result.error
    if result.outcome == DIFFERING:
        raise AlreadyHeld(result.record_id, result.differing)
    if result.state is None:  # unchanged: the held record, as it is
        return service.replica.store.require("person", result.record_id)
    return result.state


def write_people(service: "RecordService", rows: Sequence[tuple[str, str, str, Mapping[str, object]]],
                 operator: str | None, *, update: bool = False) -> list[Outcome]:
    """Many rows (op, kind, record_id, fields), as one transaction and one signature (a bad row is
    refused alone); person creates are matched against the people held (module docstring). Other
    rows are written as they are (outcome ``written``). The signing key is checked by
    ``write_many`` when anything is to be written (an all-unchanged batch signs nothing)."""
    person = get_kind("person")
    today = service.today()
    out: list[Outcome | None] = [None] * len(rows)
    cleans: dict[int, dict[str, object]] = {}
    for i, (op, kind, _rid, fields) in enumerate(rows):
        if kind == "person" and op == "create":
            try:
                cleans[i] = person.validate({f: v for f, v in fields.items() if f != "person_id"}, today=today)
            except SyncError as err:
                out[i] = Outcome(REFUSED, error=err)
    with service.people_lock:
        held = service.replica.store.people_by_id_number([str(c["id_number"]) for c in cleans.values()])
        # Per ID number: (record id, its values as this batch leaves them, the row that creates it or None).
        known: dict[str, tuple[str, dict[str, object], int | None]] = {
            n: (st.record_id, dict(st.values()), None) for n, st in held.items()}
        writes: list[tuple[str, str, str, Mapping[str, object]]] = []
        written: dict[int, int] = {}  # row -> its position in writes
        depends: dict[int, int] = {}  # row -> the row of this batch that creates its record
        for i, (op, kind, rid, fields) in enumerate(rows):
            if out[i] is not None:
                continue
            if i not in cleans:
                written[i] = len(writes)
                writes.append((op, kind, rid, fields))
                continue
            clean = cleans[i]
            number = str(clean["id_number"])
            if number not in known:
                try:  # the person's key (core.personkey): the same at every province
                    rid = service.key_of_new_person(rid, clean)
                except SyncError as err:
                    out[i] = Outcome(REFUSED, error=err)
                    continue
                known[number] = (rid, dict(clean), i)
                written[i] = len(writes)
                writes.append(("create", "person", rid, Validated(clean)))
                continue
            rid, values, creator = known[number]
            if creator is not None:
                depends[i] = creator
            diff = differing(values, clean)
            if not diff:
                out[i] = Outcome(UNCHANGED, rid)
            elif not update:
                out[i] = Outcome(DIFFERING, rid, diff)
            else:
                values.update({f: clean[f] for f in diff})
                written[i] = len(writes)
                writes.append(("update", "person", rid, Validated({f: clean[f] for f in diff})))
                out[i] = Outcome(UPDATED, rid, diff)
        results = service.write_many(writes, operator) if writes else []
    for i, at in written.items():
        r = results[at]
        prior = out[i]
        if isinstance(r, SyncError):
            out[i] = Outcome(REFUSED, error=r)
        elif prior is not None:  # updated
            out[i] = Outcome(prior.outcome, r.record_id, prior.differing, state=r)
        else:
            out[i] = Outcome(NEW if i in cleans else WRITTEN, r.record_id, state=r)
    for i, creator in depends.items():
        first = out[creator]
        if first is not None and first.error is not None:  # the record it matched was never written
            out[i] = Outcome(REFUSED, error=first.error)
    return [o for o in out if o is not None]
