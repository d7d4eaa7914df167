"""Registry of record kinds, so sync and storage stay generic over kinds.

How this works: each kind contributes its field names, a validator
(``validate(fields, *, today, partial=False)`` returning the normalised
dict), a check of an update against the record it changes (``check_update``) and a function naming the provinces a record involves (which decides
which nodes may write it and which receive it). Sync code looks a kind up by
the name carried on the wire and never imports a kind module directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core import certificate, person, request, service
from core.errors import ValidationError
from core.graph import Rules
from core.record import RecordState


@dataclass(frozen=True)
class Kind:
    name: str
    fields: tuple[str, ...]
    validate: Callable[..., dict[str, object]]  # validate(fields, *, today, partial=False)
    provinces: Callable[[Mapping[str, object]], frozenset[str]]
    routing_fields: tuple[str, ...] = ()  # the only fields ``provinces`` looks at
    # check_update(current, written, *, today): the rules an update's written fields take part in,
    # on the merged record; the fields it leaves alone are not judged again.
    check_update: Callable[..., None] | None = None
    # Shown values -> the kind's side-table row (without its key); None: no side table.
    project: Callable[[Mapping[str, object]], dict[str, object]] | None = None
    # A whole merged state -> raises Unauthorised when a field was written by a province the
    # kind does not let write it (checked before a local write and on every change received).
    check_state: Callable[[RecordState], None] | None = None
    # Records that carry a person's household and residence (copied, by ``person_id``): the node
    # that writes the person's move rewrites them, so they follow the person (runtime.follow).
    follows_person: bool = False
    # check_value(field, value, *, today): one received value on its own (no cross-field rules)
    check_value: Callable[..., None] | None = None
    # A merged state -> {field: rule} for the rules between fields that only merging concurrent
    # writes broke: shown as open conflicts (``open_conflicts``), never refused.
    merge_conflicts: Callable[[RecordState], Mapping[str, str]] | None = None


KINDS: dict[str, Kind] = {
    person.KIND: Kind(
        name=person.KIND,
        fields=person.FIELDS,
        validate=person.validate_person,
        provinces=person.person_provinces,
        routing_fields=("household_province", "residence_province"),
        check_update=person.check_update,
        check_value=person.check_value,
        merge_conflicts=person.merge_conflicts,
    ),
    certificate.KIND: Kind(
        name=certificate.KIND,
        fields=certificate.FIELDS,
        validate=certificate.validate_certificate,
        provinces=certificate.provinces,
        routing_fields=certificate.ROUTING_FIELDS,
        project=certificate.project,
        follows_person=True,
    ),
    service.KIND: Kind(
        name=service.KIND,
        fields=service.FIELDS,
        validate=service.validate_service,
        provinces=service.provinces,
        routing_fields=service.ROUTING_FIELDS,
        project=service.project,
        follows_person=True,
    ),
    request.KIND: Kind(
        name=request.KIND,
        fields=request.FIELDS,
        validate=request.validate_request,
        provinces=request.provinces,
        routing_fields=request.ROUTING_FIELDS,
        project=request.project,
        check_state=request.check_writers,
    ),
}


def graph_rules(name: str) -> Rules:
    """What core.graph needs to know about kind ``name`` (v2 deltas): the provinces a value
    involves, the fields that route it, who signs a record's v2 baseline and, for a person, who
    founds the record (the household province, with the province the resident ID names breaking
    ties, design doc 3.2a)."""
    k = get_kind(name)
    if name == person.KIND:
        return Rules(k.provinces, k.routing_fields, anchor="household_province", arbiter=person.id_province,
                     arbiter_fields=("id_number",), baseline_by="household_province")
    if name == request.KIND:  # the sender writes a request; its v2 baseline too
        return Rules(k.provinces, k.routing_fields, writers=request.writer_problem, baseline_by="from_province")
    return Rules(k.provinces, k.routing_fields, baseline_by="household_province")


def get_kind(name: str) -> Kind:
    """The registered kind called ``name``."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValidationError("kind", f"unknown record kind '{name}'") from None


def rule_conflicts(state: RecordState) -> Mapping[str, str]:
    """{field: rule} of the rules between fields that merging concurrent writes broke in ``state``
    (the kind's ``merge_conflicts``; none for a deleted record or a kind without such rules)."""
    k = KINDS.get(state.kind)
    if k is None or k.merge_conflicts is None or state.deleted:
        return {}
    return k.merge_conflicts(state)


def open_conflicts(state: RecordState) -> list[str]:
    """Every field in open conflict: concurrent versions of the field itself (``state.conflicts``),
    or a rule between fields that merging concurrent writes broke (``rule_conflicts``)."""
    return sorted(set(state.conflicts()) | set(rule_conflicts(state)))
