"""The history a delta carries to a province it newly involves (docs/design/v2-wire.md 3.5).

How this works. A province that becomes involved in a record (a move, an accepted claim)
needs the record's history to hold the delta that involved it: its dependencies, and the
chain that authorizes the current household and residence. Only the writer of that delta is
sure to hold all of it (a record that never left its province exists nowhere else), so the
writer attaches it to the delta itself, as computed by ``core.graph.RecordGraph.relay``: every
delta that counts and its ancestors, each with its own writer's seal, opening only the
surviving values and what authorizes them. Hubs store the bundle with the delta and forward
it on every route; each receiver verifies every relayed delta under its own writer's
signature, like any other, and holds the ones it lacks before the delta that carried them.
Nothing in a bundle is trusted for being in one.

``pack`` and ``unpack`` are the bundle's bytes (stored in ``log.relay``); on the wire each
relayed delta is a SignedChange of its own. Pure.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Sequence

from core.change import MAX_BODY, Envelope
from core.errors import Malformed
from core.merkle import HASH_SIZE, Seal

# A bundle is a record's history: a record with more counted deltas than this is relayed in part,
# and the receiver parks what lacks its history (shown by status) until an operator repairs it.
MAX_RELAYED = 256
MAX_PROOF = 64


def pack(envelopes: Sequence[Envelope]) -> bytes:
    """The bundle's stored bytes (JSON; bytes as base64)."""
    b64 = base64.b64encode
    return json.dumps([[b64(e.body).decode(), e.seal.key_id, b64(e.seal.signature).decode(), e.seal.index,
                        e.seal.size, b64(b"".join(e.seal.proof)).decode(), b64(e.openings).decode()]
                       for e in envelopes], separators=(",", ":")).encode()


def unpack(data: bytes) -> tuple[Envelope, ...]:
    """The envelopes ``pack`` stored; Malformed names what is wrong (stored bytes are ours, but a
    store restored from elsewhere is input too)."""
    try:
        rows = json.loads(data)
        if not isinstance(rows, list) or len(rows) > MAX_RELAYED:
            raise Malformed(f"relayed: must be a list of at most {MAX_RELAYED} deltas")
        out = []
        for row in rows:
            body, key_id, sig, index, size, proof, openings = row
            proof_bytes = base64.b64decode(proof, validate=True)
            out.append(check(Envelope(base64.b64decode(body, validate=True),
                                      Seal(key_id, base64.b64decode(sig, validate=True), index, size,
                                           tuple(proof_bytes[i:i + HASH_SIZE]
                                                 for i in range(0, len(proof_bytes), HASH_SIZE))),
                                      base64.b64decode(openings, validate=True))))
        return tuple(out)
    except (ValueError, TypeError, binascii.Error) as err:
        raise Malformed(f"relayed: not a relay bundle ({type(err).__name__})") from None


def check(env: Envelope) -> Envelope:
    """Shape checks of one relayed delta (what runtime.wire checks of any SignedChange)."""
    s = env.seal
    if len(env.body) > MAX_BODY:
        raise Malformed(f"relayed.body: {len(env.body)} bytes is over the {MAX_BODY}-byte limit")
    if not isinstance(s.key_id, str) or not s.key_id or len(s.key_id) > 64:
        raise Malformed("relayed.seal.key_id: must be 1..64 characters")
    if len(s.signature) != 64:
        raise Malformed("relayed.seal.signature: must be 64 bytes")
    if type(s.index) is not int or type(s.size) is not int or not 0 <= s.index < s.size < 2**31:
        raise Malformed("relayed.seal.index: must be within its batch")
    if len(s.proof) > MAX_PROOF or any(len(p) != HASH_SIZE for p in s.proof):
        raise Malformed(f"relayed.seal.proof: must be at most {MAX_PROOF} hashes of {HASH_SIZE} bytes")
    return env
