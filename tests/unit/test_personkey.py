"""Person keys (core.personkey): the same person gets the same key everywhere the secret is
held, a different secret gives an unrelated key, and every accepted id form is checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import uuid
from datetime import date

import pytest

from core.errors import ValidationError
from core.fields import record_id_text
from core.idnumber import make_id_number
from core.personkey import check_record_id, is_person_key, is_random_key, key_for, person_key

SECRET = bytes(range(32))
ID = make_id_number("440106", date(1990, 5, 17), 123)


def test_key_is_the_truncated_base32_hmac_of_the_canonical_id() -> None:
    mac = hmac.new(SECRET, ID.encode(), hashlib.sha256).digest()
    assert person_key(SECRET, ID) == "p-" + base64.b32encode(mac).decode().lower()[:26]
    assert is_person_key(person_key(SECRET, ID))


def test_key_from_the_first_20_bytes_is_the_key_from_the_whole_mac() -> None:
    """person_key encodes only the MAC bytes its 26 characters need: the same key, for any secret and ID."""
    rng = random.Random(12)
    for _ in range(300):
        secret = rng.randbytes(32)
        id_number = make_id_number(f"{rng.randrange(110000, 660000)}", date(rng.randrange(1930, 2020), 1 + rng.randrange(12),
                                                                             1 + rng.randrange(28)), rng.randrange(1000))
        mac = hmac.new(secret, id_number.encode(), hashlib.sha256).digest()
        assert person_key(secret, id_number) == "p-" + base64.b32encode(mac).decode().lower()[:26]


def test_same_person_same_key_whatever_the_spelling_of_the_id() -> None:
    x_id = next(make_id_number("440106", date(1990, 5, 17), n) for n in range(1000)
                if make_id_number("440106", date(1990, 5, 17), n).endswith("X"))
    assert person_key(SECRET, x_id) == person_key(SECRET, x_id.lower()) == person_key(SECRET, f"  {x_id} ")


def test_key_depends_on_the_secret_and_the_id_and_does_not_show_the_id() -> None:
    other = make_id_number("440106", date(1990, 5, 17), 125)
    keys = {person_key(SECRET, ID), person_key(bytes(32), ID), person_key(SECRET, other)}
    assert len(keys) == 3
    for key in keys:
        assert ID not in key and ID[6:14] not in key and len(key) == 28


def test_secret_must_be_32_bytes() -> None:
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError, match="32 bytes"):
            person_key(bad, ID)


def test_invalid_id_has_no_person_key_and_gets_a_random_one() -> None:
    bad = ID[:-1] + ("0" if ID[-1] != "0" else "1")  # wrong checksum
    with pytest.raises(ValidationError) as err:
        person_key(SECRET, bad)
    assert err.value.field == "id_number" and bad not in err.value.log_text
    u = uuid.uuid4()
    assert key_for(SECRET, bad, u) == f"r-{u}" and is_random_key(f"r-{u}")
    assert key_for(SECRET, None, u) == f"r-{u}"
    assert key_for(SECRET, ID, u) == person_key(SECRET, ID)


def test_record_ids_accept_the_three_forms_and_refuse_others() -> None:
    legacy = str(uuid.uuid4())
    for good in (person_key(SECRET, ID), f"r-{uuid.uuid4()}", legacy, legacy.upper()):
        assert check_record_id("person_id", good) == (legacy if good == legacy.upper() else good)
        assert record_id_text("person_id", good, date(2026, 1, 1))
    for bad in ("", "bob", "p-" + "a" * 25, "p-" + "A" * 26, "p-" + "1" * 26, "r-" + "0" * 36, f"r-{uuid.uuid1()}",
                "p-" + "a" * 27, ID, 7, None):
        with pytest.raises(ValidationError) as err:
            check_record_id("person_id", bad)
        assert err.value.field == "person_id"
        assert str(ID) not in err.value.log_text


def test_keys_do_not_collide_over_many_ids() -> None:
    rng = random.Random(12)
    ids = {make_id_number("110101", date(1950 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                          rng.randrange(1000)) for _ in range(3000)}
    assert len({person_key(SECRET, i) for i in ids}) == len(ids)
