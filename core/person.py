"""The ``person`` record kind: one migrant's case record.

How this works: a record is a flat mapping of JSON names (a wire and CLI
contract, so never rename them) to str/int/None values. ``validate_person``
checks each given field with a per-field normaliser, then runs the
cross-field checks for whichever pairs are present. It never reads the
clock: "in the future" is judged against the ``today`` the caller passes.

Two modes:

* full (``partial=False``): every required field must be present and
  non-None. Optional fields that are absent or None are dropped, so a record
  has exactly one canonical form (no ``{"x": None}`` vs ``{}`` ambiguity
  when it is hashed or signed).
* partial (``partial=True``): an update carrying only changed fields. None
  is kept, meaning "clear this optional field"; required fields may not be
  cleared. Cross-field checks only see the fields in the update, so the
  caller must re-validate the merged record in full mode.

Output keys always follow ``FIELDS`` order.

Text is NFC-normalised (one spelling per name, whatever keyboard or file it came from) and
refused when it holds a control (Cc) or format (Cf: bidi overrides, zero-width) character,
which a terminal or a viewer would act on instead of showing (``core.printable``).

An update is judged on what it writes (``check_update``): each written field by its own rule,
and the cross-field rules only where a written field takes part. A field it leaves alone is
never judged again, so a record stored before a rule existed can still be edited.

Received changes are never refused for a cross-field rule: two concurrent writes, each valid
where it was made, can break one only once merged, and a refusal would then depend on arrival
order. ``merge_conflicts`` finds such rules in a merged record, and they show as open conflicts.

Every refusal's ``rule`` says what was wrong without the value (``ValidationError.log_text``),
so logs never carry a name, an ID number or a birth date.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import date, datetime

from core.clock import Order, VectorClock
from core.errors import ValidationError
from core.idnumber import normalise_id_number
from core.printable import spelled
from core.provinces import PROVINCES, check_province
from core.record import RecordState

KIND = "person"

FIELDS: tuple[str, ...] = (
    "id_number",
    "name",
    "sex",
    "birth_date",
    "household_province",
    "residence_province",
    "residence_city",
    "moved_in_on",
    "marital_status",
    "children",
    "contraception",
    "marriage_cert_no",
    "marriage_cert_status",
    "last_service_on",
)

REQUIRED: frozenset[str] = frozenset(
    {"id_number", "name", "sex", "birth_date", "household_province", "residence_province"}
)

SEXES: tuple[str, ...] = ("M", "F")
MARITAL_STATUSES: tuple[str, ...] = ("unmarried", "married", "divorced", "widowed")
MARRIAGE_CERT_STATUSES: tuple[str, ...] = (
    "none",
    "requested",
    "issued",
    "verified",
    "expired",
    "revoked",
)

# Upper bounds exist so a typo or hostile peer cannot bloat every replica;
# they are generous for real data.
NAME_MAX = 64
TEXT_MAX = 256
MAX_CHILDREN = 30

# date.fromisoformat (3.11+) also accepts "20260101" and week dates; the wire
# format is strictly YYYY-MM-DD, so match the shape first.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Refused in text at write time: Unicode control (Cc: C0, DEL, C1) and format (Cf) characters.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})  # Cs: a lone surrogate, which no store can encode
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _date(field: str, value: object, today: date) -> str:
    if isinstance(value, datetime):
        # datetime is a date subclass; a timestamp here is a caller bug.
        raise ValidationError(field, "must be a date YYYY-MM-DD, got a datetime", rule="must be a date YYYY-MM-DD")
    if isinstance(value, date):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if not _ISO_DATE.fullmatch(text):
            raise ValidationError(field, f"must be a date YYYY-MM-DD, got {value!r}", rule="must be a date YYYY-MM-DD")
        try:
            parsed = date.fromisoformat(text)
        except ValueError:
            raise ValidationError(field, f"{text} is not a valid date", rule="is not a valid date") from None
    else:
        raise ValidationError(
            field, f"must be a date string YYYY-MM-DD, got {type(value).__name__}"
        )
    if parsed > today:
        raise ValidationError(field, f"date {parsed.isoformat()} is in the future", rule="must not be in the future")
    return parsed.isoformat()


def _text(field: str, value: object, max_len: int) -> str | None:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    text = unicodedata.normalize("NFC", value.strip())
    if len(text) > max_len:
        raise ValidationError(field, f"must be at most {max_len} characters, got {len(text)}",
                              rule=f"must be at most {max_len} characters")
    if not text.isprintable():  # C speed; only text that fails it is looked at closely
        for i, ch in enumerate(text):
            category = unicodedata.category(ch)
            if category in REFUSED_CATEGORIES:
                kind = {"Cc": "control", "Cf": "format (bidi or zero-width)", "Cs": "lone surrogate"}[category]
                rule = f"must not contain {kind} characters (Unicode {category})"
                raise ValidationError(field, f"{rule}; found {spelled(ch)} at position {i + 1}", rule=rule)
    # Blank optional text means "not recorded"; storing "" would be a second
    # spelling of None.
    return text or None


def _enum(field: str, value: object, allowed: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip() in allowed:
        return value.strip()
    raise ValidationError(field, f"must be one of {', '.join(allowed)}; got {value!r}",
                          rule=f"must be one of {', '.join(allowed)}")


def _name(field: str, value: object, today: date) -> str:
    text = _text(field, value, NAME_MAX)
    if text is None:
        raise ValidationError(field, f"must be 1..{NAME_MAX} characters, got an empty name")
    return text


def _sex(field: str, value: object, today: date) -> str:
    # Lower-case is a common CLI slip and unambiguous, so accept it.
    if isinstance(value, str):
        value = value.strip().upper()
    return _enum(field, value, SEXES)


def _children(field: str, value: object, today: date) -> int:
    if isinstance(value, bool):
        raise ValidationError(field, f"must be an integer, got {value!r}", rule="must be an integer")
    if isinstance(value, str):
        if not _INT_TEXT.fullmatch(value.strip()):
            raise ValidationError(field, f"must be an integer, got {value!r}", rule="must be an integer")
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValidationError(field, f"must not be negative, got {value}", rule="must not be negative")
    if value > MAX_CHILDREN:
        raise ValidationError(field, f"must be at most {MAX_CHILDREN}, got {value}", rule=f"must be at most {MAX_CHILDREN}")
    return value


_Checker = Callable[[str, object, date], object]

_CHECKERS: dict[str, _Checker] = {
    "id_number": lambda f, v, t: normalise_id_number(v, f),  # 15 digits: converted to 18
    "name": _name,
    "sex": _sex,
    "birth_date": _date,
    "household_province": lambda f, v, t: check_province(f, v),
    "residence_province": lambda f, v, t: check_province(f, v),
    "residence_city": lambda f, v, t: _text(f, v, NAME_MAX),
    "moved_in_on": _date,
    "marital_status": lambda f, v, t: _enum(f, v, MARITAL_STATUSES),
    "children": _children,
    "contraception": lambda f, v, t: _text(f, v, TEXT_MAX),
    "marriage_cert_no": lambda f, v, t: _text(f, v, NAME_MAX),
    "marriage_cert_status": lambda f, v, t: _enum(f, v, MARRIAGE_CERT_STATUSES),
    "last_service_on": _date,
}
assert tuple(_CHECKERS) == FIELDS


def _cross_checks(out: Mapping[str, object], written: Collection[str] | None = None) -> None:
    """The rules between fields; with ``written``, only the ones a written field takes part in."""
    for _other, broken in _broken_rules(out, written):
        raise broken


def _broken_rules(out: Mapping[str, object],
                  written: Collection[str] | None = None) -> Iterator[tuple[str, ValidationError]]:
    """Each rule between two fields that ``out`` breaks: (the other field, the ValidationError
    naming the field it is reported on)."""

    def judged(*fields: str) -> bool:
        return written is None or any(f in written for f in fields)

    id_number = out.get("id_number")
    birth = out.get("birth_date")
    if isinstance(id_number, str) and _ID_SHAPE.fullmatch(id_number):
        # A checked id_number is check_id_number's canonical output (a stored one is too, unless it
        # predates the rules, hence the shape check), so the birth date and sex it encodes are read directly.
        if isinstance(birth, str) and judged("id_number", "birth_date"):
            encoded = f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"
            if birth != encoded:
                yield "id_number", ValidationError(
                    "birth_date", f"{birth} does not match id_number (which encodes {encoded})",
                    rule="does not match the birth date id_number encodes",
                )
        sex = out.get("sex")
        if isinstance(sex, str) and judged("id_number", "sex"):
            encoded_sex = "M" if int(id_number[16]) % 2 == 1 else "F"
            if sex != encoded_sex:
                yield "id_number", ValidationError(
                    "sex", f"{sex} does not match id_number (which encodes {encoded_sex})",
                    rule="does not match the sex id_number encodes")
    if isinstance(birth, str):
        # ISO strings compare in date order.
        for later in ("moved_in_on", "last_service_on"):
            value = out.get(later)
            if isinstance(value, str) and value < birth and judged("birth_date", later):
                yield "birth_date", ValidationError(later, f"{value} is before birth_date {birth}",
                                                    rule="must not be before birth_date")


def merge_conflicts(state: RecordState) -> dict[str, str]:
    """Rules between fields that the shown record breaks only because concurrent writes were
    merged: {field: rule} for both fields of each such rule.

    Each write was checked against the record its writer held, so a rule is broken by merging
    when the two fields' shown versions were written concurrently (neither writer had seen the
    other's). Receivers never refuse a change for that (the result would depend on arrival
    order); the record shows it as an open conflict instead, on both fields, until an operator
    writes one of them so that the rule holds (``settle`` or ``update``). A rule broken by versions
    that were written one after the other (a record stored before the rule) is no conflict."""
    if not _concurrent_winners(state):
        return {}  # the usual record (every store saves it): no rule can have been broken by merging
    return _judged_merge_conflicts(state)


def _judged_merge_conflicts(state: RecordState) -> dict[str, str]:
    """``merge_conflicts`` without its shortcut: every broken rule judged (tests compare the two)."""
    values = {k: v for k, v in state.values().items() if k in _CHECKERS}
    out: dict[str, str] = {}
    for other, err in _broken_rules(values):
        assert err.field is not None  # _broken_rules builds each error with the field it is reported on
        mine, theirs = state.winner(err.field), state.winner(other)
        if mine is not None and theirs is not None and mine.clock.compare(theirs.clock) is Order.CONCURRENT:
            rule = f"{err.field} {err.rule}; the two were written concurrently"
            out.setdefault(err.field, rule)
            out.setdefault(other, rule)
    return out


def _concurrent_winners(state: RecordState) -> bool:
    """Whether two fields' shown versions were written concurrently: the only way ``merge_conflicts``
    finds anything. One write stamps all its fields with one clock, so a record usually has one or
    two distinct winning clocks, one after the other; comparing those few is much cheaper than
    judging the rules (at most 14 fields, so at most 91 comparisons)."""
    fields = state.fields
    one = None
    for versions in fields.values():  # a write's versions share one clock object: the common case
        if versions:
            clock = versions[0].clock
            if one is None:
                one = clock
            elif clock is not one and clock != one:
                break
    else:
        return False
    clocks: dict[tuple[tuple[str, int], ...], VectorClock] = {}
    for name, versions in fields.items():
        if versions and name in _CHECKERS:
            clock = versions[0].clock
            clocks.setdefault(clock.entries, clock)
    distinct = list(clocks.values())
    return any(a.compare(b) is Order.CONCURRENT for i, a in enumerate(distinct) for b in distinct[i + 1:])


_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")


def validate_person(
    fields: Mapping[str, object], *, today: date, partial: bool = False
) -> dict[str, object]:
    """Validate and normalise a person record (or, with ``partial``, an update)."""
    if not isinstance(fields, Mapping):
        raise ValidationError("fields", f"must be a mapping, got {type(fields).__name__}")
    for key in fields:
        if key not in _CHECKERS:
            raise ValidationError(str(key), "unknown field", named_by_input=True)
    out: dict[str, object] = {}
    for field in FIELDS:
        if field not in fields:
            if field in REQUIRED and not partial:
                raise ValidationError(field, "required field is missing")
            continue
        value = fields[field]
        normalised = None if value is None else _CHECKERS[field](field, value, today)
        if normalised is None:
            if field in REQUIRED:
                raise ValidationError(field, "required field cannot be empty")
            if not partial:
                continue
        out[field] = normalised
    _cross_checks(out)
    return out


def check_update(current: Mapping[str, object], written: Mapping[str, object], *, today: date) -> None:
    """Check an update against the record it changes (``validate_person(..., partial=True)`` has
    already checked and normalised ``written``, each field by its own rule).

    Only the rules a written field takes part in are checked, against the merged record: the
    fields the update leaves alone are never judged again, so a record holding a value that a
    newer rule refuses (written before the rule, or by an older release) is never frozen.
    ``today`` is accepted for the kind interface; no rule here needs it.
    """
    merged = {**current, **written}
    for field in REQUIRED:
        if field in written and merged.get(field) is None:
            raise ValidationError(field, "required field cannot be empty")
    _cross_checks(merged, written)


def differing(held: Mapping[str, object], given: Mapping[str, object]) -> tuple[str, ...]:
    """The fields of ``given`` (a validated record) whose value is not ``held``'s, in FIELDS order.

    Only the given fields count: a row that leaves a field out (an empty CSV cell) says nothing
    about it, so a record is "the same" when everything the row says matches."""
    return tuple(f for f in FIELDS if f in given and (given[f] != held.get(f) or type(given[f]) is not type(held.get(f))))


def person_provinces(fields: Mapping[str, object]) -> frozenset[str]:
    """Provinces a record involves: its household and residence provinces."""
    # Unrolled (household first, as the generator did): called per version on every change.
    household = fields.get("household_province")
    residence = fields.get("residence_province")
    if household is None:
        if residence is None:
            return frozenset()
        return frozenset((check_province("residence_province", fields["residence_province"]),))
    first = check_province("household_province", fields["household_province"])
    if residence is None:
        return frozenset((first,))
    return frozenset((first, check_province("residence_province", fields["residence_province"])))


def id_province(fields: Mapping[str, object]) -> str | None:
    """The province a resident ID number names (its first two digits), when that is a province
    code: a tie-break between two provinces that each register the person as household (core.graph)."""
    number = fields.get("id_number")
    code = number[:2] if isinstance(number, str) else ""
    return code if code in PROVINCES else None


def parse_field_value(field: str, text: str) -> object:
    """Turn CLI ``--set FIELD=VALUE`` text into the field's JSON value.

    Only the type is converted here; ``validate_person`` does the checking.
    """
    if field not in _CHECKERS:
        raise ValidationError(field, "unknown field", named_by_input=True)
    if text.strip() == "" or text.strip().lower() == "null":
        return None
    if field == "children":
        if not _INT_TEXT.fullmatch(text.strip()):
            raise ValidationError(field, f"must be an integer, got {text!r}", rule="must be an integer")
        return int(text.strip())
    return text


# -- received values ------------------------------------------------------------------------
# A change received from a peer carries the whole record state. Receivers check the values it
# writes itself (its own versions) field by field, as they are: each must be what this schema's
# normaliser makes of it (a local write stores nothing else). Cross-field rules are not checked
# here: concurrent changes can break them only once merged, and refusing a change for that would
# make replicas differ by arrival order; the merge shows them as a conflict instead.


def check_value(field: str, value: object, *, today: date) -> None:
    """Refuse one received field value (ValidationError naming the field and the reason).

    ``today`` is the receiver's date with any allowance for clock skew already added.
    """
    checker = _CHECKERS.get(field)
    if checker is None:
        raise ValidationError(field, "unknown field")
    if value is None:
        if field in REQUIRED:
            raise ValidationError(field, "required field cannot be empty")
        return
    normalised = checker(field, value, today)
    if normalised != value or type(normalised) is not type(value):
        raise ValidationError(field, "not in normal form (a local write would have stored it otherwise)")
