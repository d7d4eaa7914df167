"""Canonical JSON: one byte string per value, so signatures and digests agree.

Sorted keys, no insignificant whitespace, UTF-8, and only the JSON types that
have one exact representation (no floats: a float has several spellings).
"""

from __future__ import annotations

import json

import orjson

from core.errors import Malformed


def _check(value: object, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        raise Malformed(f"{path}: floats are not allowed in canonical JSON")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise Malformed(f"{path}: object keys must be strings")
            _check(item, f"{path}.{key}")
        return
    raise Malformed(f"{path}: {type(value).__name__} is not a JSON value")


def dumps(value: object, *, checked: bool = True) -> bytes:
    """Canonical bytes of ``value``.

    ``checked=False`` skips the type walk for values that are canonical by
    construction: validated field values, or values decoded by ``loads``
    (which refuses floats), assembled by our own code.
    """
    if checked:
        _check(value, "$")
    try:
        # orjson's sorted compact UTF-8 output is byte-identical to the json module's for
        # every value we allow (property-tested in tests/unit/test_canonical.py), ten times faster.
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits from a peer
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def scalar_bytes(value: object) -> bytes:
    """``dumps`` for one field value, with a fast path for the common scalars."""
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if type(value) is int:
        return str(value).encode()
    if type(value) is str:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:  # a lone surrogate: let dumps() report it
            return dumps(value)
    return dumps(value)


def loads(data: bytes) -> object:
    try:
        text = data.decode("utf-8")
        # json.loads(text, parse_float=..., parse_constant=...) is this BOM check, then decode()
        # with a decoder built for the call; one decoder built once does the same for less.
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed(f"body: not valid UTF-8 JSON ({exc})") from None
    except ValueError as exc:  # e.g. an integer literal over Python's 4300-digit limit
        raise Malformed(f"body: unacceptable JSON value ({exc})") from None


def _no_float(text: str) -> object:
    raise Malformed(f"body: non-integer number {text!r} is not allowed")


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_float)
