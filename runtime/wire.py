"""Translation between protobuf messages and domain objects, nothing more."""

from __future__ import annotations

from typing import Iterable, Sequence

from core import relay
from core.change import MAX_BODY, Envelope
from core.errors import Malformed
from core.merkle import HASH_SIZE, Seal
from store.store import LogEntry
from yipanqi.v2 import federation_pb2 as pb

PROTOCOL = 2
MAX_RELAYED = relay.MAX_RELAYED
MAX_FETCH = 500  # delta ids in one Fetch
MAX_PROOF = 64
# The log keeps seal index and size in 32-bit signed columns. Size is not signed (core.merkle):
# the last leaf of a genuine batch also verifies at index 2**31 of a "2**31+1 batch", which
# PostgreSQL would refuse to store, failing the whole batch on every retry.
MAX_SEAL_SIZE = 2**31 - 1

# Batches. Senders cut a batch at BATCH_CHANGES changes or BATCH_BYTES of change bodies,
# whichever comes first; receivers refuse a batch over MAX_BATCH_CHANGES or MAX_BATCH_BYTES
# whole (runtime.replica), without looking at its changes one by one.
BATCH_CHANGES = 500
BATCH_BYTES = 512 * 1024  # 500 ordinary changes (~750 bytes each) fit
MAX_BATCH_CHANGES = 2000
MAX_BATCH_BYTES = 4 * 1024 * 1024


def cut(entries: Sequence[LogEntry], max_bytes: int = BATCH_BYTES) -> int:
    """How many of ``entries`` (in order) fit in one batch of at most ``max_bytes`` of bodies (at least one)."""
    total = 0
    for i, e in enumerate(entries):
        total += len(e.body)
        if total > max_bytes and i:
            return i
    return len(entries)


def envelope(msg: pb.SignedChange, *, nested: bool = False) -> Envelope:
    """Decode one SignedChange, with the deltas it relays (core.relay); Malformed names the field at fault."""
    if nested and msg.relayed:
        raise Malformed("relayed.relayed: a relayed delta carries no relays of its own")
    if len(msg.relayed) > MAX_RELAYED:
        raise Malformed(f"relayed: {len(msg.relayed)} deltas is over the {MAX_RELAYED}-delta limit")
    if len(msg.openings) > MAX_BODY:
        raise Malformed(f"openings: {len(msg.openings)} bytes is over the {MAX_BODY}-byte limit")
    if len(msg.body) > MAX_BODY:
        raise Malformed(f"body: {len(msg.body)} bytes is over the {MAX_BODY}-byte limit")
    s = msg.seal
    if not s.key_id or len(s.key_id) > 64:
        raise Malformed("seal.key_id: must be 1..64 characters")
    if len(s.signature) != 64:
        raise Malformed(f"seal.signature: must be 64 bytes, got {len(s.signature)}")
    if s.size > MAX_SEAL_SIZE:
        raise Malformed(f"seal.size: {s.size} is over the {MAX_SEAL_SIZE}-change limit")
    if s.size < 1 or s.index >= s.size:
        raise Malformed(f"seal.index: {s.index} is not within a batch of {s.size}")
    proof = tuple(s.proof)
    if len(proof) > MAX_PROOF or (proof and set(map(len, proof)) != {HASH_SIZE}):
        raise Malformed(f"seal.proof: must be at most {MAX_PROOF} hashes of {HASH_SIZE} bytes")
    relayed = tuple(envelope(r, nested=True) for r in msg.relayed)
    return Envelope(msg.body, Seal(s.key_id, s.signature, s.index, s.size, proof), msg.openings or b"{}", relayed)


def signed_change(env: Envelope) -> pb.SignedChange:
    s = env.seal
    return pb.SignedChange(
        body=env.body,
        seal=pb.Seal(key_id=s.key_id, signature=s.signature, index=s.index, size=s.size, proof=list(s.proof)),
        openings=_openings(env.openings), relayed=[signed_change(r) for r in env.relayed],
    )


def batch(cursor: int, entries: Sequence[LogEntry], certificates: Iterable[bytes]) -> pb.Batch:
    Change, Seal = pb.SignedChange, pb.Seal
    return pb.Batch(cursor=cursor, certificates=list(certificates), changes=[
        Change(body=e.body, seal=Seal(key_id=s.key_id, signature=s.signature, index=s.index, size=s.size, proof=s.proof),
               openings=_openings(e.openings), relayed=[signed_change(r) for r in relay.unpack(e.relay)] if e.relay else ())
        for e in entries for s in (e.seal,)])


def _openings(openings: bytes) -> bytes:
    return b"" if openings == b"{}" else openings  # none: the field left out (a v1-style change, a test's)


def hello(identity: str) -> pb.Hello:
    from importlib.metadata import PackageNotFoundError, version

    try:
        software = f"yipanqi {version('yipanqi')}"
    except PackageNotFoundError:
        software = "yipanqi"
    return pb.Hello(protocol=PROTOCOL, software=software, identity=identity)
