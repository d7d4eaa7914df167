"""The ``certificate`` record kind: one electronic 婚育证明 (marriage and childbirth certificate).

How this works: the record is the federation's view of a certificate: whose it
is, who issued it, its validity and its status (issued, superseded, revoked).
The signed document itself (core.certdoc) is what the holder carries; the
record carries its digest, so a node can tell that a document is the one it
knows. The record id is the certificate number. It routes like a person: to
the issuing (household) province and the holder's residence province, copied
from the person when it is written, so the residence province learns of a
revocation or a newer certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from core import fields as f
from core.errors import ValidationError
from core.person import person_provinces

KIND = "certificate"
STATUSES: tuple[str, ...] = ("issued", "superseded", "revoked")

_CHECKERS: dict[str, f.Checker] = {
    "person_id": f.record_id_text,
    "household_province": f.province,  # the issuer: only the household province issues
    "residence_province": f.province,
    "issued_on": f.past_date,
    "expires_on": f.any_date,
    "status": f.enum(STATUSES),
    "status_on": f.past_date,
    "reason": f.text(256),  # why it was revoked
    "superseded_by": f.uuid_text,
    "digest": f.sha256_hex,  # SHA-256 of the signed document's canonical bytes
}
FIELDS: tuple[str, ...] = tuple(_CHECKERS)
REQUIRED = frozenset({"person_id", "household_province", "issued_on", "expires_on", "status"})
ROUTING_FIELDS = ("household_province", "residence_province")


def _cross(out: Mapping[str, object]) -> None:
    issued, expires, status_on = out.get("issued_on"), out.get("expires_on"), out.get("status_on")
    if isinstance(issued, str) and isinstance(expires, str) and expires <= issued:
        raise ValidationError("expires_on", f"{expires} is not after issued_on {issued}")
    if isinstance(issued, str) and isinstance(status_on, str) and status_on < issued:
        raise ValidationError("status_on", f"{status_on} is before issued_on {issued}")


def validate_certificate(fields: Mapping[str, object], *, today: date, partial: bool = False) -> dict[str, object]:
    return f.validate_fields(fields, checkers=_CHECKERS, required=REQUIRED, today=today, partial=partial,
                             cross=_cross)


def project(values: Mapping[str, object]) -> dict[str, object]:
    """The ``certificates`` side-table row (the store adds cert_no and fits values to the columns)."""
    return {"person_id": values.get("person_id"), "issuer": values.get("household_province"),
            "issued_on": values.get("issued_on"), "expires_on": values.get("expires_on"),
            "status": values.get("status"), "status_on": values.get("status_on") or values.get("issued_on")}


provinces = person_provinces
