"""Where v2 deltas from outside will enter a process (docs/design/v2-wire.md 8.2, step 2).

How this works. ``check_deltas`` does for a delta what ``runtime.intake.check`` does for a v1
change, in Matrix's order (format, signature, then the values): decode exactly the bytes,
make sure the peer may hand them to us, verify the author's signature over them, make sure the
signer is the origin the delta names, and check each value the author writes against its
kind's schema on its own. What it does *not* decide is whether the author may write the
record: that needs the record's history, and is ``core.graph``'s decision in the store
(``Store.receive_deltas``). A delta that fails any step here becomes a ``Refused`` with an
operator-readable reason, charged to its signer when the seal verifies and to the TLS peer
otherwise; it never stops the rest of the batch.

Every delta a peer sends enters here (runtime.replica).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import replace
from typing import Iterable

from core.change import Envelope
from core.delta import Delta, parse
from core.errors import BadSignature, Malformed, RemoteError, SyncError, Unauthorised, ValidationError
from core.kinds import get_kind
from core.record import DELETED
from runtime.intake import MAX_BAD_SIGNATURES, SKEW_DAYS, BatchRefused, Verifies, _check_storable, reason
from store.store import ReceivedDelta, Refused


def check_deltas(envelopes: Iterable[Envelope], verifier: Verifies, *, peer: str, peer_may_forward: bool,
                 for_province: str | None = None, today: dt.date | None = None, fetched: bool = False
                 ) -> tuple[list[ReceivedDelta], list[Refused]]:
    """Split envelopes into verified deltas for the store to decide on, and refusals to quarantine.

    ``peer`` is the identity from the peer's certificate; a province node may push only what it
    authored, hubs forward anyone's deltas. ``for_province`` (set on a node) refuses a delta whose
    signed routes leave that province out, whatever a hub sends. The deltas a delta relays
    (core.relay) are checked the same way, except that anyone may have written them and they
    route where their own writers sent them; each verified one comes before the delta that
    carried it, marked ``relayed``, and the carrier keeps only the verified ones. ``fetched``
    deltas (a Fetch answer) are checked like relayed ones: superseded values may be unopened."""
    accepted: list[ReceivedDelta] = []
    refused: list[Refused] = []
    proven: dict = {}
    today = (today or dt.date.today()) + dt.timedelta(days=SKEW_DAYS)
    bad = [0]
    for env in envelopes:
        kept: list[Envelope] = []
        relayed: list[ReceivedDelta] = []
        for r in env.relayed:
            got = _check_one(r, verifier, proven, peer=peer, anyone=True, bundled=True, for_province=None,
                             today=today, refused=refused, bad=bad)
            if got is not None:
                relayed.append(got)
                kept.append(r)
        if len(kept) != len(env.relayed):
            env = replace(env, relayed=tuple(kept))
        got = _check_one(env, verifier, proven, peer=peer, anyone=peer_may_forward, bundled=fetched,
                         for_province=for_province, today=today, refused=refused, bad=bad)
        if got is not None:  # what a refused delta relays is not taken either: it is history for its carrier
            accepted.extend(relayed)
            accepted.append(got)
    return accepted, refused


def _check_one(env: Envelope, verifier: Verifies, proven: dict, *, peer: str, anyone: bool, bundled: bool,
               for_province: str | None, today: dt.date, refused: list[Refused], bad: list[int]) -> ReceivedDelta | None:
    """One delta (see ``check_deltas``). ``anyone``: anyone may have written it (a hub forwards
    it, or it is relayed); ``bundled``: it came in a relay bundle, where superseded values
    are left unopened."""
    delta: Delta | None = None
    signer: str | None = None
    try:
        delta = parse(env.body, env.openings, complete=not bundled)
        _check_storable(delta)
        if not anyone and delta.origin != peer:
            raise Malformed(f"{peer} may only push deltas it authored; this one claims origin {delta.origin}")
        signer = verifier.verify(env.body, env.seal, proven)
        if signer != delta.origin:
            raise Unauthorised(f"origin claims {delta.origin} but the delta is signed by {signer}")
        if for_province is not None and for_province not in delta.routes:
            raise Malformed(f"delta is not routed to province {for_province}")
        _check_values(delta, today)
        return ReceivedDelta(hashlib.sha256(env.body).hexdigest(), delta, env, signer, relayed=bundled)
    except BadSignature as err:
        bad[0] += 1
        if bad[0] > MAX_BAD_SIGNATURES:
            raise BatchRefused(f"more than {MAX_BAD_SIGNATURES} deltas with bad signatures") from None
        refused.append(_refused(env, reason(err), delta, peer, err.category))
    except RemoteError as err:
        refused.append(_refused(env, reason(err), delta, signer or peer, err.category))
    except SyncError as err:  # e.g. an unknown kind, or identity errors on a forged origin
        refused.append(_refused(env, f"{Malformed.category}: {err}", delta, signer or peer, Malformed.category))
    return None


def _check_values(delta: Delta, today: dt.date) -> None:
    """Each value the delta writes, against its kind's schema on its own (cross-field rules are
    judged on the merged record, where concurrent writes meet). Malformed names the field. A field
    the schema does not know is kept (and passed on) only when the delta declares a newer protocol,
    as a newer release's record fields are (mixed versions within v2). (A lone UTF-16 surrogate,
    which nothing can store, is refused by ``core.delta.parse`` already: it has no bytes to check
    against its commitment.)"""
    try:
        check = get_kind(delta.kind).check_value
    except ValidationError as err:
        raise Malformed(f"kind: {err.reason}") from None
    for name, value in delta.values.items():
        if name == DELETED:
            continue  # parse checked it is true or false
        if check is not None:
            try:
                check(name, value, today=today)
            except ValidationError as err:
                if err.reason == "unknown field" and delta.newer:
                    continue  # a field of a newer schema version: kept and passed on
                raise Malformed(f"set.{name[:64].replace(chr(0), '<NUL>')}: {err.reason}") from None


def _refused(env: Envelope, why: str, delta: Delta | None, charged: str, category: str) -> Refused:
    env = replace(env, relayed=())  # what is quarantined is the delta, not what it carried
    if delta is None:
        return Refused(env, why, charged=charged, category=category)
    return Refused(env, why, delta.origin, delta.seq, delta.kind, delta.record_id, charged=charged, category=category)
