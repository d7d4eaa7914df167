"""GB 11643-1999 resident identity numbers (居民身份证号码).

How this works: an ID number is 18 characters: a 6-digit administrative area
code (the first two digits are the province), an 8-digit birth date
YYYYMMDD, a 3-digit sequence number whose parity gives the sex (odd = male),
and an ISO 7064 MOD 11-2 check character (0-9 or X). ``check_id_number``
verifies structure, birth date and checksum and returns the canonical form
(upper-case X). The area code is deliberately not checked against
``PROVINCES``: people keep the number issued at birth, so old or since
re-coded areas (e.g. pre-1997 Chongqing numbers starting 51) are legitimate.

First-generation numbers (GB 11643-1989) have 15 digits: the area code, a
6-digit birth date YYMMDD (all born in the 1900s) and the sequence number,
with no check character. ``normalise_id_number`` turns one into its 18-digit
form by the standard's rule (insert "19" before the birth year, then append
the check character), so a person is held under one number whichever card a
clerk typed in; every operator input (add, update, import) goes through it.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from operator import mul

from core.errors import ValidationError

_WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"


def check_char(first17: str) -> str:
    """The check character for the first 17 digits."""
    if len(first17) != 17:
        raise ValueError(f"check_char needs 17 digits, got {len(first17)}")
    # map/mul instead of a generator: every ID number received or written is checked here
    total = sum(map(mul, map(int, first17), _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def _parse_birth(digits8: str) -> date | None:
    try:
        return date(int(digits8[:4]), int(digits8[4:6]), int(digits8[6:8]))
    except ValueError:
        return None


def check_id_number(value: object, field: str = "id_number") -> str:
    """Validate an 18-character ID number and return it with an upper-case X."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    problem = id_number_problem(value.strip().upper())
    if problem:
        raise ValidationError(field, problem[0], rule=problem[1])
    return value.strip().upper()


@lru_cache(maxsize=4096)  # the same id is checked by validation and by the cross-field rules
def id_number_problem(text: str) -> tuple[str, str] | None:
    """What is wrong with ``text``: (the reason for the operator, the rule without the digits)."""
    if len(text) != 18:
        return f"must be 18 characters, got {len(text)}", "must be 18 characters"
    # isdecimal() alone would let full-width or other Unicode digits through.
    body, last = text[:17], text[17]
    if not (body.isascii() and body.isdigit()):
        return "first 17 characters must be digits 0-9", "first 17 characters must be digits 0-9"
    if last not in _CHECK_CHARS:
        return "last character must be a digit 0-9 or X", "last character must be a digit 0-9 or X"
    if _parse_birth(body[6:14]) is None:
        return f"birth date {body[6:14]} is not a date", "the birth date part is not a date"
    expected = check_char(body)
    if last != expected:
        return f"bad checksum (expected '{expected}', got '{last}')", "bad checksum"
    return None


def from_15_digits(value: str, field: str = "id_number") -> str:
    """The 18-digit form of a 15-digit first-generation number (GB 11643-1989)."""
    text = value.strip()
    if len(text) != 15 or not (text.isascii() and text.isdigit()):
        raise ValidationError(field, "a first-generation number must be 15 digits 0-9",
                              rule="a first-generation number must be 15 digits 0-9")
    body = text[:6] + "19" + text[6:]
    if _parse_birth(body[6:14]) is None:
        raise ValidationError(field, f"birth date {body[6:14]} is not a date", rule="the birth date part is not a date")
    return body + check_char(body)


def normalise_id_number(value: object, field: str = "id_number") -> str:
    """Operator input: an 18-character number checked (``check_id_number``), or a 15-digit
    first-generation one converted to 18 (``from_15_digits``)."""
    if isinstance(value, str) and len(value.strip()) == 15:
        return from_15_digits(value, field)
    return check_id_number(value, field)


def id_birth_date(id_number: str) -> date:
    """Birth date encoded in a (valid) ID number."""
    birth = _parse_birth(check_id_number(id_number)[6:14])
    assert birth is not None  # check_id_number already refused bad dates
    return birth


def id_sex(id_number: str) -> str:
    """'M' or 'F' from the parity of the 17th character."""
    return "M" if int(check_id_number(id_number)[16]) % 2 == 1 else "F"


def id_province(id_number: str) -> str:
    """First two digits: the province of the issuing area (may be historical)."""
    return check_id_number(id_number)[:2]


def make_id_number(area6: str, birth: date, serial3: int) -> str:
    """Build a valid ID number; ``serial3`` parity decides the sex (odd = M)."""
    if len(area6) != 6 or not (area6.isascii() and area6.isdigit()):
        raise ValidationError("area6", f"must be 6 digits, got {area6!r}")
    if isinstance(serial3, bool) or not isinstance(serial3, int) or not 0 <= serial3 <= 999:
        raise ValidationError("serial3", f"must be an integer 0..999, got {serial3!r}")
    if not 1000 <= birth.year <= 9999:
        raise ValidationError("birth", f"year {birth.year} does not fit 4 digits")
    body = f"{area6}{birth:%Y%m%d}{serial3:03d}"
    return body + check_char(body)
