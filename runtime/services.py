"""Service records (孕检 and the free services): recorded by the province that gave them.

How this works: ``add`` checks the operator's input with the service kind's
validator, then the person: it must be held here and this province must be
the person's household or residence province. The service copies the
person's household and residence provinces as its routing fields, so it goes
to exactly those provinces and the national database. Then it is one
ordinary local write. ``list`` reads the services side table by person
(oldest first) at any replica that holds records (a node, the national hub).
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from core.errors import PermissionDenied, ValidationError
from core.kinds import get_kind
from core.record import RecordState
from runtime.records import RecordService, shown
from store.store import Store

KIND = "service"


def held_person(store: Store, person_id: str, field: str = "person_id") -> RecordState:
    """The live person record ``person_id`` held here, or a ValidationError naming ``field``."""
    if not isinstance(person_id, str) or not person_id.strip():
        raise ValidationError(field, "required")
    state = store.get("person", person_id.strip())
    if state is None or state.deleted:
        raise ValidationError(field, f"no person {person_id.strip()} is held at {store.owner}")
    return state


class ServiceDesk:
    def __init__(self, store: Store, records: RecordService | None,
                 today: Callable[[], dt.date] = dt.date.today) -> None:
        self.store = store
        self.records = records  # None on hubs: they list, they do not record
        self.today = today

    def add(self, person_id: str, type_: str, on: str, result: str | None, operator: str | None) -> RecordState:
        if self.records is None:
            raise PermissionDenied("hubs do not record services; record them at a province node")
        given = {"type": type_, "on": on, **({"result": result} if result else {})}
        get_kind(KIND).validate(given, today=self.today(), partial=True)  # type, date, result first
        if type_ == "certificate_check":
            raise ValidationError("type", "certificate_check is recorded by `yipanqi certificate verify -c`, "
                                          "not by hand")
        person = held_person(self.store, person_id).values()
        birth = person.get("birth_date")
        if isinstance(birth, str) and given["on"].strip() < birth:
            raise ValidationError("on", f"{given['on'].strip()} is before the person's birth date")
        own = self.store.province
        household, residence = person.get("household_province"), person.get("residence_province")
        if own not in (household, residence):
            raise ValidationError("provider_province",
                                  f"province {own} is not involved with person {person_id.strip()} (household "
                                  f"{household}, residence {residence}); only those provinces record their services")
        fields = {"person_id": person_id.strip(), **given, "provider_province": own,
                  "household_province": household, "residence_province": residence}
        return self.records.write("create", KIND, "", fields, operator)

    def list(self, person_id: str) -> list[dict[str, object]]:
        if not self.store.hold_records:
            raise PermissionDenied("regional hubs hold no records; ask a node or the national hub")
        held_person(self.store, person_id)
        out = []
        for row in self.store.projected(KIND, {"person_id": person_id.strip()}, ["given_on"]):
            state = self.store.get(KIND, row["service_id"])
            if state is not None and not state.deleted:
                out.append(shown(state))
        return out
