"""The one place where changes from outside enter a process.

Every change a node pulls or a hub accepts passes ``check``: decode the exact
bytes, make sure the peer may hand it to us, verify the author's signature
over those bytes (end to end: a hub cannot forge or alter a change), and make
sure the author may write that record. A change that fails any step becomes a
``Refused`` with a reason an operator can read; it never stops the batch.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Iterable, Protocol

from core.apply import authorise
from core.delta import Delta
from core.change import PROTOCOL, Change, Envelope, Head, parse, parse_head
from core.errors import (BadSignature, Equivocation, Malformed, RemoteError, SyncError, Unauthorised, UnknownAuthor,
                         ValidationError)
from core.kinds import get_kind
from core.record import DELETED
from core.kinds import KINDS
from core.merkle import Seal
from store.schema import log
from store.store import Accepted, ReceivedDelta, Refused


class Verifies(Protocol):
    def verify(self, body: bytes, seal: Seal, proven: dict | None = None) -> str: ...


# Every category a refusal is filed under (core.errors: each class's ``category``).
CATEGORIES = frozenset(e.category for e in (BadSignature, UnknownAuthor, Unauthorised, Malformed, Equivocation))


def reason(err: SyncError) -> str:
    return f"{err.category}: {err}"


MAX_BAD_SIGNATURES = 4
# A date "in the future" is judged a day late: the author's today may be our tomorrow.
SKEW_DAYS = 1
# Versions a change carries from earlier writes were checked when they were written; here
# they only have to be scalars of a storable size (a legacy value a newer rule forbids must
# not freeze its record).
MAX_CARRIED_TEXT = 4096


class BatchRefused(Malformed):
    """The rest of a batch is not worth checking; it is refused whole, charged to the peer."""


def check(
    envelopes: Iterable[Envelope],
    verifier: Verifies,
    *,
    peer: str,
    peer_may_forward: bool,
    for_province: str | None = None,
    full: bool = True,
    fetched: bool = False,
) -> tuple[list[ReceivedDelta], list[Refused]]:
    """Split envelopes into the deltas to store and the ones to quarantine (v2: see
    ``runtime.deltaintake.check_deltas``, which this is; ``full`` is kept for callers of the v1
    signature: every process now checks each delta whole, values included)."""
    from runtime.deltaintake import check_deltas  # it builds on this module's pieces

    return check_deltas(envelopes, verifier, peer=peer, peer_may_forward=peer_may_forward, for_province=for_province,
                        fetched=fetched)


def check_v1(
    envelopes: Iterable[Envelope],
    verifier: Verifies,
    *,
    peer: str,
    peer_may_forward: bool,
    for_province: str | None = None,
    full: bool = True,
) -> tuple[list[Accepted], list[Refused]]:
    """The v1 intake of whole-state changes (core.change), kept for the v1 core's own tests and
    for reading a pre-v2 store; nothing on the v2 wire comes through here."""
    accepted: list[Accepted] = []
    refused: list[Refused] = []
    proven: dict = {}  # batch trees verified so far: the rest of a batch costs ~1 hash a change
    today = dt.date.today() + dt.timedelta(days=SKEW_DAYS)
    bad_signatures = 0
    for env in envelopes:
        change = None
        author = None
        try:
            change = parse(env.body) if full else parse_head(env.body)
            _check_storable(change)
            _check_encodable(change, env.body)
            if not peer_may_forward and change.origin != peer:
                raise Malformed(f"{peer} may only push changes it authored; this one claims origin {change.origin}")
            author = verifier.verify(env.body, env.seal, proven)
            authorise(change, author)
            if isinstance(change, Change) and (k := KINDS.get(change.kind)) is not None and k.check_state is not None:
                k.check_state(change.state)  # e.g. only a request's receiver writes its answer
            if for_province is not None and for_province not in change.routes:
                raise Malformed(f"change is not routed to province {for_province}")
            if isinstance(change, Change):  # full
                _check_values(change, env.body, today)
            accepted.append(Accepted(change, env))
        except BadSignature as err:
            bad_signatures += 1
            if bad_signatures > MAX_BAD_SIGNATURES:
                raise BatchRefused(f"more than {MAX_BAD_SIGNATURES} changes with bad signatures") from None
            refused.append(_refused(env, err.category, reason(err), change, peer))
        except RemoteError as err:
            if author is None and peer_may_forward:
                author = _signer(verifier, env, proven)
            refused.append(_refused(env, err.category, reason(err), change, author or peer))
        except SyncError as err:  # e.g. identity parse errors on a forged origin
            if author is None and peer_may_forward:
                author = _signer(verifier, env, proven)
            refused.append(_refused(env, Malformed.category, f"{Malformed.category}: {err}", change, author or peer))
    return accepted, refused


def _signer(verifier: Verifies, env: Envelope, proven: dict) -> str | None:
    """Who signed a change refused before its signature was checked (None if it does not verify)."""
    try:
        return verifier.verify(env.body, env.seal, proven)
    except SyncError:
        return None


def _protocol(body: bytes) -> int:
    # The version a change declares; parse() has checked it is an integer >= 1. Our own bodies end
    # in ',"v":1}' (canonical JSON sorts "v" last), so the common case reads no JSON.
    if body.endswith(b',"v":%d}' % PROTOCOL):
        return PROTOCOL
    from core import canonical

    return int(canonical.loads(body)["v"])  # type: ignore[index]  # parse() has checked it is an object with "v"


def _check_values(change: Change, body: bytes, today: dt.date) -> None:
    """The values a received change writes (its own versions, stamped with its timestamp), each
    against the kind's schema on its own; every other version it carries must be a scalar.
    Fields a newer schema version added (the change declares a newer protocol) are kept as they
    are, so mixed versions keep working. Malformed names the field and the reason."""
    check = get_kind(change.kind).check_value
    newer = None
    at = change.at
    for name, versions in change.state.fields.items():
        for v in versions:
            value = v.value
            stamp = v.at
            if stamp is not at:
                if stamp != at:
                    if isinstance(value, str):
                        if len(value) > MAX_CARRIED_TEXT:
                            raise Malformed(f"state.fields.{name}: a carried value is over {MAX_CARRIED_TEXT} characters")
                    elif not (value is None or isinstance(value, (bool, int, float))):
                        raise Malformed(f"state.fields.{name}: a carried value must be a scalar, "
                                        f"got {type(value).__name__}")
                    continue
                at = stamp  # the object the change's own versions share: the rest compare by identity
            if name == DELETED:
                if not isinstance(value, bool):
                    raise Malformed(f"state.fields.{DELETED}: must be true or false, got {type(value).__name__}")
                continue
            if check is None:
                continue
            try:
                check(name, value, today=today)
            except ValidationError as err:
                if err.reason == "unknown field":
                    if newer is None:
                        newer = _protocol(body) > PROTOCOL
                    if newer:
                        continue  # a field of a newer schema version: kept and passed on
                raise Malformed(f"state.fields.{name}: {err.reason}") from None


OPERATOR_MAX = log.c.operator.type.length  # type: ignore[attr-defined]  # a String column: its TypeEngine has one


def _text_ok(text: str) -> bool:
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        return False
    try:
        text.encode("utf-8")  # lone surrogates ("\ud800" in JSON) encode on neither backend
    except UnicodeEncodeError:
        return False
    return True


def _check_storable(change: Change | Head | Delta) -> None:
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


def _check_encodable(change: Change | Head, body: bytes) -> None:
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


def _refused(env: Envelope, category: str, why: str, change: Change | Head | None, charged: str) -> Refused:
    if change is None:
        return Refused(env, why, charged=charged, category=category)
    return Refused(env, why, change.origin, change.seq, change.kind, change.record_id, charged=charged,
                   category=category)


def unreadable(body: bytes, why: str, charged: str) -> Refused:
    """Input refused before any change in it could be decoded (a batch refused whole), charged to
    the TLS peer that sent it: "malformed: <why>"."""
    return Refused(Envelope(bytes(body[:MAX_KEPT]), Seal("", b"", 0, 1, ())), f"{Malformed.category}: {why}",
                   charged=charged, category=Malformed.category)


MAX_KEPT = 256 * 1024
