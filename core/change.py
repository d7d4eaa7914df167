"""The change envelope: the unit of exchange between nodes and hubs.

A change is the full new state of one record (so applying it is a merge, and
merging is order-insensitive), plus who wrote it and where it must go:

    kind, id      the record
    origin, seq   the authoring node and its per-origin sequence number (1, 2, ...)
    at            the author's hybrid logical timestamp for the write
    op            create / update / delete / settle (for people reading history)
    operator      the operator certificate behind the write (audit)
    prior         the provinces the record involved at the author *before* the
                  write, so the province a person left is told they left
    state         the record state after the write (per-field versions)

The body is canonical JSON and is what the author signs (see certs.signing and
core.merkle). Receivers keep and forward the exact bytes they verified and only
parse them; nothing is ever re-serialised before a signature check. Unknown
top-level keys written by a newer release are kept (they live in the bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, TypeVar, cast

from core import canonical
from core.errors import Malformed
from core.hlc import Timestamp
from core.kinds import get_kind
from core.merkle import Seal
from core.provinces import PROVINCES
from core.record import RecordState

PROTOCOL = 1
OPS = ("create", "update", "delete", "settle")
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class Change:
    kind: str
    record_id: str
    origin: str
    seq: int
    at: Timestamp
    op: str
    operator: str | None
    prior: frozenset[str]
    state: RecordState

    def to_body(self) -> bytes:
        # Canonical JSON sorts keys: every other key sorts before "state", and
        # "state" before "v", so the head, the state's own canonical bytes and
        # the tail concatenate to exactly dumps() of the whole object.
        head = canonical.dumps(
            {
                "at": self.at.to_json(),
                "id": self.record_id,
                "kind": self.kind,
                "op": self.op,
                "operator": self.operator,
                "origin": self.origin,
                "prior": sorted(self.prior),
                "seq": self.seq,
            },
            checked=False,  # ints and strings we assembled ourselves
        )
        return head[:-1] + b',"state":' + self.state.to_bytes() + b',"v":%d}' % PROTOCOL

    @property
    def routes(self) -> frozenset[str]:
        """Every province this change must reach (including the author's own)."""
        return state_provinces(self.state) | self.prior


def state_provinces(state: RecordState) -> frozenset[str]:
    """Provinces any surviving value of the record involves (conflicts included)."""
    # Asked several times per change (routes, authorise, intake, the store's projection):
    # computed once per state and kept on the (immutable) instance, as it keeps its bytes.
    cache = state.__dict__
    out = cache.get(_PROVINCES_ATTR)
    if out is None:
        out = cache[_PROVINCES_ATTR] = _state_provinces(state)
    return out


_PROVINCES_ATTR = "_state_provinces"


def _state_provinces(state: RecordState) -> frozenset[str]:
    kind = get_kind(state.kind)
    provinces = kind.provinces
    out: set[str] = set()
    for name in kind.routing_fields:
        for version in state.fields.get(name, ()):
            out |= provinces({name: version.value})
    return frozenset(out)


_T = TypeVar("_T")


def _get(obj: Mapping[str, object], key: str, typ: type[_T]) -> _T:
    if key not in obj:
        raise Malformed(f"{key}: missing")
    value = obj[key]
    if typ is int and type(value) is not int:
        raise Malformed(f"{key}: must be an integer")
    if typ is not int and not isinstance(value, typ):
        raise Malformed(f"{key}: must be {typ.__name__}")
    return cast(_T, value)  # checked against typ just above


@dataclass(frozen=True, slots=True)
class Head:
    """A change's routing and audit facts, decoded without building its state.

    Regional hubs store and forward but hold no records: they need who wrote
    what and where it goes (to check the author and route it), not the merged
    state, so they skip the cost of decoding every field version. The state's
    structure is still checked in full by every node and the national hub.
    """

    kind: str
    record_id: str
    origin: str
    seq: int
    at: Timestamp
    op: str
    operator: str | None
    prior: frozenset[str]
    routes: frozenset[str]


def _decode(body: bytes) -> dict:
    if len(body) > MAX_BODY:
        raise Malformed(f"body: {len(body)} bytes is over the {MAX_BODY}-byte limit")
    obj = canonical.loads(body)
    if not isinstance(obj, dict):
        raise Malformed("body: must be a JSON object")
    return obj


_MISSING = object()


def _header(obj: Mapping[str, object]) -> tuple[str, str, str, int, Timestamp, str, str | None, frozenset[str]]:
    """Check and pick out everything but the state; Malformed names the key.

    Returns (kind, record_id, origin, seq, at, op, operator, prior), Change's
    field order. Each value is type-checked inline; when a check fails, _get
    raises the error it always has ("missing" or "must be ...").
    """
    get = obj.get
    version = get("v", _MISSING)
    if type(version) is not int:
        version = _get(obj, "v", int)
    if version < 1:
        raise Malformed(f"v: protocol version {version} is not supported")
    kind = get("kind", _MISSING)
    if not isinstance(kind, str):
        kind = _get(obj, "kind", str)
    try:
        get_kind(kind)
    except Exception:
        raise Malformed(f"kind: unknown record kind {kind!r}") from None
    record_id = get("id", _MISSING)
    if not isinstance(record_id, str):
        record_id = _get(obj, "id", str)
    if not record_id or len(record_id) > 64:
        raise Malformed("id: must be 1..64 characters")
    origin = get("origin", _MISSING)
    if not isinstance(origin, str):
        origin = _get(obj, "origin", str)
    seq = get("seq", _MISSING)
    if type(seq) is not int:
        seq = _get(obj, "seq", int)
    if seq < 1 or seq >= 2**63:
        raise Malformed(f"seq: {seq} is out of range")
    op = get("op", _MISSING)
    if not isinstance(op, str):
        op = _get(obj, "op", str)
    if op not in OPS:
        raise Malformed(f"op: {op!r} is not one of {', '.join(OPS)}")
    operator = get("operator", _MISSING)  # null means "no operator"; absent is a second spelling
    if operator is _MISSING:
        raise Malformed("operator: missing")
    if operator is not None and not isinstance(operator, str):
        raise Malformed("operator: must be a string or null")
    prior = get("prior", _MISSING)
    if not isinstance(prior, list):
        prior = _get(obj, "prior", list)
    # Known codes only: prior becomes routes, stored as two-character log_dest rows and a
    # ",44,45," text (a comma or a long entry there would abort the batch on PostgreSQL).
    for p in prior:
        if not (isinstance(p, str) and p in PROVINCES):
            raise Malformed("prior: must be a list of province codes")
    at = get("at", _MISSING)
    if not isinstance(at, list):
        at = _get(obj, "at", list)
    return (kind, record_id, origin, seq, Timestamp.from_json(at), op, operator, frozenset(prior))


def parse(body: bytes) -> Change:
    """Decode exactly these bytes into a Change, or raise Malformed naming the key."""
    obj = _decode(body)
    head = _header(obj)
    state = obj.get("state", _MISSING)
    if not isinstance(state, dict):
        _get(obj, "state", dict)
    # Encoding the decoded state is cheaper than rebuilding its JSON later (see from_wire).
    return Change(*head, RecordState.from_wire(head[0], head[1], state))


def parse_head(body: bytes) -> Head:
    """Decode the routing and audit facts of a change (see Head)."""
    obj = _decode(body)
    head = _header(obj)
    state = obj.get("state", _MISSING)
    if not isinstance(state, dict):
        _get(obj, "state", dict)
    fields = state.get("fields")
    if not isinstance(fields, dict):
        raise Malformed("state.fields: must be an object")
    kind = get_kind(head[0])
    provinces = kind.provinces
    routes: set[str] = set(head[7])
    for name in kind.routing_fields:
        versions = fields.get(name, [])
        if not isinstance(versions, list):
            raise Malformed(f"state.fields.{name}: must be a list of versions")
        for version in versions:
            if not isinstance(version, list) or len(version) != 2:
                raise Malformed(f"state.fields.{name}: must be [value, index into stamps]")
            routes |= provinces({name: version[0]})
    return Head(*head, frozenset(routes))


@dataclass(frozen=True, slots=True)
class Envelope:
    """What travels: the exact signed body bytes and the seal that covers them."""

    body: bytes
    seal: Seal
    openings: bytes = b"{}"  # v2 deltas: the field values beside the signed commitments (core.delta)
    # v2: the deltas this one carries to a province it newly involves (core.relay), each
    # verifiable under its own writer's signature; () for most.
    relayed: tuple["Envelope", ...] = ()
