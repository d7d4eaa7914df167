"""The ``service`` record kind: one service a migrant received (孕检 and the free services).

How this works: a service is written by the province that gave it (normally
the residence province, or the household province) and goes to the person's
household and residence provinces and the national database, never elsewhere.
Like every kind in this wire format the record carries its own routing fields,
``household_province`` and ``residence_province``, copied from the person
when it is written; the node that records a person's move rewrites
``residence_province`` on the person's services, so the new residence province
receives the history. That is all the kind needs: a schema, this routing rule
and a validator; sync, storage and intake are the generic ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from core import fields as f
from core.person import TEXT_MAX, person_provinces

KIND = "service"
TYPES: tuple[str, ...] = (
    "pregnancy_check",  # 孕检
    "contraceptive_service",  # 避孕节育
    "reproductive_health",  # 生殖健康检查
    "birth",  # 生育登记
    "certificate_check",  # 婚育证明查验: recorded when a node verifies a holder's certificate
)
TYPE_NAMES: dict[str, str] = {
    "pregnancy_check": "孕检",
    "contraceptive_service": "避孕节育",
    "reproductive_health": "生殖健康检查",
    "birth": "生育登记",
    "certificate_check": "婚育证明查验",
}

_CHECKERS: dict[str, f.Checker] = {
    "person_id": f.record_id_text,
    "type": f.enum(TYPES),
    "on": f.past_date,
    "result": f.text(TEXT_MAX),
    "provider_province": f.province,
    "household_province": f.province,
    "residence_province": f.province,
}
FIELDS: tuple[str, ...] = tuple(_CHECKERS)
REQUIRED = frozenset({"person_id", "type", "on", "provider_province", "household_province"})
ROUTING_FIELDS = ("household_province", "residence_province")


def validate_service(fields: Mapping[str, object], *, today: date, partial: bool = False) -> dict[str, object]:
    return f.validate_fields(fields, checkers=_CHECKERS, required=REQUIRED, today=today, partial=partial)


def project(values: Mapping[str, object]) -> dict[str, object]:
    """The ``services`` side-table row (the store adds service_id and fits values to the columns)."""
    return {"person_id": values.get("person_id"), "type": values.get("type"), "given_on": values.get("on"),
            "provider": values.get("provider_province"),
            # the person's provinces, for the assessment's coverage without a join (added with 0005_requests)
            "household": values.get("household_province"), "residence": values.get("residence_province")}


provinces = person_provinces
