"""Person keys: one key per person, the same at every province (issue 12).

How this works. A person with a valid 18-digit resident ID gets the key
``p-`` + base32(HMAC-SHA256(federation secret, canonical ID))[:26], lower case:
every holder of the secret (the nodes and the national hub) computes the same
key for the same person, so two provinces registering one person write one
record. The secret matters: resident IDs span only about 2^37 values, so a
plain hash could be inverted by trying them all; without the secret (regional
hubs, logs, anyone reading a key) the key says nothing about who it is.
26 base32 characters keep 130 bits of the MAC.

Anyone else (no valid ID yet) gets a random ``r-<uuid4>``, made by the caller
(core draws no randomness). Records written before keys existed keep their
plain uuid ids: ``check_record_id`` accepts all three forms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid

from core.errors import ValidationError
from core.idnumber import id_number_problem

SECRET_BYTES = 32
PERSON_PREFIX = "p-"
RANDOM_PREFIX = "r-"
_PERSON = re.compile(r"p-[a-z2-7]{26}")
_RANDOM = re.compile(r"r-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def valid_id_number(value: object) -> str | None:
    """The canonical form of a valid 18-character ID number, or None (never raises, never logs)."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    return None if id_number_problem(text) else text


def person_key(secret: bytes, id_number: str) -> str:
    """The key of the person holding ``id_number`` (which must be valid) under ``secret``."""
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise ValueError(f"the federation secret must be {SECRET_BYTES} bytes")
    canonical = valid_id_number(id_number)
    if canonical is None:
        raise ValidationError("id_number", "not a valid 18-character resident ID: it has no person key",
                              rule="not a valid resident ID")
    mac = hmac.new(secret, canonical.encode("ascii"), hashlib.sha256).digest()
    # base32 turns each 5 bytes into 8 characters on their own, so the first 20 bytes give exactly the
    # first 32 characters of the whole MAC's encoding: the same key for 60% of the encoding work.
    return PERSON_PREFIX + base64.b32encode(mac[:20]).decode("ascii").lower()[:26]


def key_for(secret: bytes, id_number: object, random_uuid: uuid.UUID) -> str:
    """The key a new person record gets: its ID's key, else ``r-`` + the caller's random uuid4."""
    canonical = valid_id_number(id_number)
    if canonical is not None:
        return person_key(secret, canonical)
    return random_key(random_uuid)


def random_key(random_uuid: uuid.UUID) -> str:
    """The key of a record with no valid resident ID: ``r-`` + a random uuid4 the caller draws."""
    return f"{RANDOM_PREFIX}{random_uuid}"


def is_person_key(value: str) -> bool:
    return bool(_PERSON.fullmatch(value))


def is_random_key(value: str) -> bool:
    return bool(_RANDOM.fullmatch(value))


def check_record_id(field: str, value: object) -> str:
    """A record id in one of its accepted forms (``p-`` key, ``r-`` key, legacy uuid), normalised.

    The refused value is quoted to the operator but never to logs (``rule``)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    text = value.strip()
    if _PERSON.fullmatch(text) or _RANDOM.fullmatch(text):
        return text
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValidationError(field, f"{value!r} is not a record id (p-<26 base32>, r-<uuid4> or a UUID)",
                              rule="must be a record id: p-<26 base32>, r-<uuid4> or a UUID") from None
