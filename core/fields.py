"""Field checkers shared by record kinds, and one generic validator over them.

How this works: a kind is a table of per-field checkers (``check(field,
value, today) -> normalised value or None``), a set of required fields and an
optional cross-field check. ``validate_fields`` applies them with the same two
modes as ``core.person`` (full: required present, absent optionals dropped;
partial: an update, None clears an optional field), so every kind has exactly
one canonical form. The person kind keeps its own tuned validator; the
checkers here are its checkers, re-exported, so the rules are the same.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import date

from core.errors import ValidationError
from core.person import _ISO_DATE, _date, _enum, _text
from core.provinces import check_province

Checker = Callable[[str, object, date], object]

__all__ = ["Checker", "any_date", "enum", "past_date", "province", "record_id_text", "text", "uuid_text",
           "validate_fields"]

past_date: Checker = _date  # a YYYY-MM-DD date, not after today


def any_date(field: str, value: object, today: date) -> str:
    """A YYYY-MM-DD date, which may be in the future (an expiry)."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value.strip()):
        raise ValidationError(field, f"must be a date YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ValidationError(field, f"{value.strip()} is not a valid date") from None


def text(max_len: int) -> Checker:
    return lambda f, v, t: _text(f, v, max_len)


def enum(allowed: tuple[str, ...]) -> Checker:
    return lambda f, v, t: _enum(f, v, allowed)


def province(field: str, value: object, today: date) -> str:
    return check_province(field, value)


def uuid_text(field: str, value: object, today: date) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValidationError(field, f"{value!r} is not a UUID") from None


def record_id_text(field: str, value: object, today: date) -> str:
    """A reference to a person: a ``p-``/``r-`` person key or a legacy UUID (core.personkey)."""
    from core.personkey import check_record_id

    return check_record_id(field, value)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(field: str, value: object, today: date) -> str:
    if isinstance(value, str) and _HEX64.fullmatch(value.strip()):
        return value.strip()
    raise ValidationError(field, "must be 64 lower-case hex digits (a SHA-256)")


def validate_fields(
    fields: Mapping[str, object],
    *,
    checkers: Mapping[str, Checker],
    required: frozenset[str],
    today: date,
    partial: bool = False,
    cross: Callable[[Mapping[str, object]], None] | None = None,
) -> dict[str, object]:
    """Validate and normalise ``fields`` (output keys in ``checkers`` order)."""
    if not isinstance(fields, Mapping):
        raise ValidationError("fields", f"must be a mapping, got {type(fields).__name__}")
    for key in fields:
        if key not in checkers:
            raise ValidationError(str(key), "unknown field")
    out: dict[str, object] = {}
    for name, check in checkers.items():
        if name not in fields:
            if name in required and not partial:
                raise ValidationError(name, "required field is missing")
            continue
        value = fields[name]
        normalised = None if value is None else check(name, value, today)
        if normalised is None:
            if name in required:
                raise ValidationError(name, "required field cannot be empty")
            if not partial:
                continue
        out[name] = normalised
    if cross is not None:
        cross(out)
    return out
