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
from typing import Mapping

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
    kind = get_kind(state.kind)
    out: set[str] = set()
    for name in kind.routing_fields:
        for version in state.fields.get(name, ()):
            out |= kind.provinces({name: version.value})
    return frozenset(out)


def _get(obj: Mapping[str, object], key: str, typ: type) -> object:
    if key not in obj:
        raise Malformed(f"{key}: missing")
    value = obj[key]
    if typ is int and type(value) is not int:
        raise Malformed(f"{key}: must be an integer")
    if typ is not int and not isinstance(value, typ):
        raise Malformed(f"{key}: must be {typ.__name__}")
    return value


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


def _header(obj: Mapping[str, object]) -> dict[str, object]:
    """Check and pick out everything but the state; Malformed names the key."""
    version = _get(obj, "v", int)
    if version < 1:  # type: ignore[operator]
        raise Malformed(f"v: protocol version {version} is not supported")
    kind = _get(obj, "kind", str)
    try:
        get_kind(kind)  # type: ignore[arg-type]
    except Exception:
        raise Malformed(f"kind: unknown record kind {kind!r}") from None
    record_id = _get(obj, "id", str)
    if not record_id or len(record_id) > 64:  # type: ignore[arg-type]
        raise Malformed("id: must be 1..64 characters")
    origin = _get(obj, "origin", str)
    seq = _get(obj, "seq", int)
    if seq < 1 or seq >= 2**63:  # type: ignore[operator]
        raise Malformed(f"seq: {seq} is out of range")
    op = _get(obj, "op", str)
    if op not in OPS:
        raise Malformed(f"op: {op!r} is not one of {', '.join(OPS)}")
    if "operator" not in obj:  # null means "no operator"; absent is a second spelling
        raise Malformed("operator: missing")
    operator = obj["operator"]
    if operator is not None and not isinstance(operator, str):
        raise Malformed("operator: must be a string or null")
    prior = _get(obj, "prior", list)
    # Known codes only: prior becomes routes, stored as two-character log_dest rows and a
    # ",44,45," text (a comma or a long entry there would abort the batch on PostgreSQL).
    if not all(isinstance(p, str) and p in PROVINCES for p in prior):  # type: ignore[attr-defined]
        raise Malformed("prior: must be a list of province codes")
    return dict(kind=kind, record_id=record_id, origin=origin, seq=seq, at=Timestamp.from_json(_get(obj, "at", list)),
                op=op, operator=operator, prior=frozenset(prior))  # type: ignore[arg-type]


def parse(body: bytes) -> Change:
    """Decode exactly these bytes into a Change, or raise Malformed naming the key."""
    obj = _decode(body)
    head = _header(obj)
    state = RecordState.from_json(head["kind"], head["record_id"], _get(obj, "state", dict))  # type: ignore[arg-type]
    return Change(state=state, **head)  # type: ignore[arg-type]


def parse_head(body: bytes) -> Head:
    """Decode the routing and audit facts of a change (see Head)."""
    obj = _decode(body)
    head = _header(obj)
    state = _get(obj, "state", dict)
    fields = state.get("fields")  # type: ignore[attr-defined]
    if not isinstance(fields, dict):
        raise Malformed("state.fields: must be an object")
    kind = get_kind(head["kind"])  # type: ignore[arg-type]
    routes: set[str] = set(head["prior"])  # type: ignore[arg-type]
    for name in kind.routing_fields:
        versions = fields.get(name, [])
        if not isinstance(versions, list):
            raise Malformed(f"state.fields.{name}: must be a list of versions")
        for version in versions:
            if not isinstance(version, list) or len(version) != 2:
                raise Malformed(f"state.fields.{name}: must be [value, index into stamps]")
            routes |= kind.provinces({name: version[0]})
    return Head(routes=frozenset(routes), **head)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What travels: the exact signed body bytes and the seal that covers them."""

    body: bytes
    seal: Seal
