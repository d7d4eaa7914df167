"""The one place where changes from outside enter a process.

Every change a node pulls or a hub accepts passes ``check``: decode the exact
bytes, make sure the peer may hand it to us, verify the author's signature
over those bytes (end to end: a hub cannot forge or alter a change), and make
sure the author may write that record. A change that fails any step becomes a
``Refused`` with a reason an operator can read; it never stops the batch.
"""

from __future__ import annotations

import re
from typing import Iterable, Protocol

from core.apply import authorise
from core.kinds import KINDS
from core.change import Change, Envelope, parse, parse_head
from core.errors import Malformed, RemoteError, SyncError
from core.merkle import Seal
from store.schema import log
from store.store import Accepted, Refused


class Verifies(Protocol):
    def verify(self, body: bytes, seal: Seal, proven: dict | None = None) -> str: ...


REASONS = {
    "BadSignature": "bad signature",
    "UnknownAuthor": "unknown author",
    "Unauthorised": "unauthorised writer",
    "Malformed": "malformed",
    "Equivocation": "equivocation",
}


def reason(err: SyncError) -> str:
    return f"{REASONS.get(type(err).__name__, type(err).__name__)}: {err}"


def check(
    envelopes: Iterable[Envelope],
    verifier: Verifies,
    *,
    peer: str,
    peer_may_forward: bool,
    for_province: str | None = None,
    full: bool = True,
) -> tuple[list[Accepted], list[Refused]]:
    """Split envelopes into the ones to store and the ones to quarantine.

    ``peer`` is the identity from the peer's certificate. A province node may
    only push what it authored itself; hubs forward anyone's changes (still
    verified end to end). ``for_province`` is set on a node: it refuses
    anything not routed to its own province, whatever a hub sends.
    ``full=False`` (regional hubs, which merge nothing) decodes only the
    change's head; the state is decoded and checked where it is merged.
    """
    accepted: list[Accepted] = []
    refused: list[Refused] = []
    proven: dict = {}  # batch trees verified so far: the rest of a batch costs ~1 hash a change
    for env in envelopes:
        change = None
        try:
            change = parse(env.body) if full else parse_head(env.body)
            _check_storable(change)
            _check_encodable(change, env.body)
            if not peer_may_forward and change.origin != peer:
                raise Malformed(f"{peer} may only push changes it authored; this one claims origin {change.origin}")
            author = verifier.verify(env.body, env.seal, proven)
            authorise(change, author)
            if full and (k := KINDS.get(change.kind)) is not None and k.check_state is not None:
                k.check_state(change.state)  # e.g. only a request's receiver writes its answer
            if for_province is not None and for_province not in change.routes:
                raise Malformed(f"change is not routed to province {for_province}")
            accepted.append(Accepted(change, env))
        except RemoteError as err:
            refused.append(_refused(env, reason(err), change))
        except SyncError as err:  # e.g. identity parse errors on a forged origin
            refused.append(_refused(env, f"malformed: {err}", change))
    return accepted, refused


OPERATOR_MAX = log.c.operator.type.length


def _text_ok(text: str) -> bool:
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        return False
    try:
        text.encode("utf-8")  # lone surrogates ("\ud800" in JSON) encode on neither backend
    except UnicodeEncodeError:
        return False
    return True


def _check_storable(change) -> None:  # type: ignore[no-untyped-def]
    """Refuse free text the log cannot store as-is on every backend.

    Otherwise a change that is validly signed by an authorised author (e.g. one
    written on a SQLite node) passes intake, then fails the log insert on a
    PostgreSQL replica and aborts the whole batch, every time it is retried.
    """
    if not _text_ok(change.record_id):
        raise Malformed("id: must be valid text without NUL characters")
    if change.operator is not None:
        if len(change.operator) > OPERATOR_MAX:
            raise Malformed(f"operator: longer than {OPERATOR_MAX} characters")
        if not _text_ok(change.operator):
            raise Malformed("operator: must be valid text without NUL characters")


# A "\\ud800".."\\udfff" escape: the only way JSON in valid UTF-8 can spell a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_encodable(change, body: bytes) -> None:  # type: ignore[no-untyped-def]
    """Refuse a state that has no UTF-8 form: a lone surrogate (only spellable as a JSON escape)
    in a field name, value or clock node would pass every check, then fail encoding the merged
    record at ingest, aborting the whole batch on every retry. (Regional hubs decode only the
    head, store the bytes as they are, and leave this to whoever merges the state.)"""
    if not isinstance(change, Change) or not _SURROGATE_ESCAPE.search(body):
        return  # the common case: nothing to encode twice
    try:
        change.state.to_bytes()
    except UnicodeEncodeError:
        raise Malformed("state: a field name, value or clock holds a lone UTF-16 surrogate") from None


def _refused(env: Envelope, why: str, change) -> Refused:  # type: ignore[no-untyped-def]
    if change is None:
        return Refused(env, why)
    return Refused(env, why, change.origin, change.seq, change.kind, change.record_id)


def unreadable(body: bytes, why: str) -> Refused:
    """A change whose envelope could not even be decoded (bad seal fields)."""
    return Refused(Envelope(bytes(body[:MAX_KEPT]), Seal("", b"", 0, 1, ())), why)


MAX_KEPT = 256 * 1024
