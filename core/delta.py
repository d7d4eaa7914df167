"""The v2 change envelope: a signed delta (see docs/design/v2-wire.md, section 2).

How this works. A v1 change carried a record's whole state, every writer's
versions included, under the signature of its last author alone, so an author
could put words in another province's mouth. A delta carries only what its
author writes now, plus the hashes of the deltas it was written on top of:

    kind, id             the record
    origin, epoch, seq   the author, its key epoch, its per-author order
    at                   the author's hybrid logical timestamp
    op                   create / update / delete / settle / accept / refuse / alias
    operator             the operator certificate behind the write (audit)
    deps                 the heads of the author's replica of the record
    accepts              claims this delta lets into the record (op "accept"), or turns away ("refuse")
    merges               records this one takes in (op "alias": ``person link``)
    legacy               present (true) only on a v2 baseline: the create that carries a record's
                         v1 state, signed by its household province (``yipanqi upgrade v2``)

Values travel beside the body, not in it (design doc 8.1): ``set`` holds, per field, a salted
commitment SHA-256(name, salt, value), and the *openings* ({field: [salt, value]}) travel next
to the signed bytes. A receiver checks every opening against its commitment, so a value is as
attributable as if it were signed, yet a relay can leave out a superseded value without
breaking the signature, and nobody who sees a body without its openings can test guesses of a
low-entropy value (a birth date, a province) against it.
    set                  the author's new field values (``_deleted`` included)
    routes               the provinces the delta goes to, as the author computed them
    chain                per-destination counters (accountable hubs; opaque here)

A delta's identity is the SHA-256 of its exact signed bytes, so deduplication
needs no trust in (origin, seq), and two different deltas can never share an
identity. Nothing here decides whether a delta is allowed: that is
``core.graph``, evaluated on the history the receiver holds.

Status: pure groundwork for the v2 wire format, property-tested; the running
federation still speaks v1 (core.change).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from core import canonical
from core.errors import Malformed
from core.hlc import Timestamp
from core.identity import Identity
from core.provinces import PROVINCES
from core.record import DELETED

PROTOCOL = 2
OPS = ("create", "update", "delete", "settle", "accept", "refuse", "alias")
MAX_MERGES = 8
MAX_BODY = 64 * 1024
MAX_DEPS = 64  # an author's heads on one record: the concurrent branches one write joins
MAX_ID = 64
MAX_FIELDS = 64
SALT_BYTES = 16
_FIELD_DOMAIN = b"yipanqi/field/v2\n"
_HEX = frozenset("0123456789abcdef")
_KEYS = frozenset({"v", "kind", "id", "origin", "epoch", "seq", "at", "op", "operator", "deps", "accepts",
                   "set", "routes", "chain", "merges", "legacy"})


def commitment(name: str, salt: bytes, value: object) -> str:
    """The commitment to one field value: SHA-256 over the field's name, the salt and the value's
    canonical bytes (the name binds it to its field; the salt hides low-entropy values)."""
    return hashlib.sha256(_FIELD_DOMAIN + name.encode() + b"\0" + salt + canonical.scalar_bytes(value)).hexdigest()


def _derived_salt(origin: str, seq: int, name: str) -> str:
    return hashlib.sha256(f"yipanqi/derived-salt\n{origin}\n{seq}\n{name}".encode()).hexdigest()[:2 * SALT_BYTES]


def delta_id(body: bytes) -> str:
    """A delta's identity: the SHA-256 of its signed bytes, in hex."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class Delta:
    kind: str
    record_id: str
    origin: str
    epoch: int
    seq: int
    at: Timestamp
    op: str
    operator: str | None
    deps: tuple[str, ...]
    accepts: tuple[str, ...]
    values: Mapping[str, object]
    routes: frozenset[str]
    chain: Mapping[str, int]
    merges: tuple[str, ...] = ()  # record ids an alias takes in
    commitments: Mapping[str, str] = field(default_factory=dict)  # every field it writes -> commitment hex
    salts: Mapping[str, str] = field(default_factory=dict)  # the opened fields' salts, hex
    legacy: bool = False  # a v2 baseline: a record's v1 state, carried by one create (core.baseline)
    # The protocol version the body declares: PROTOCOL for every delta this release writes; a
    # newer release's is higher (its extra keys stay in the signed bytes, which travel as signed).
    version: int = PROTOCOL

    def __post_init__(self) -> None:
        # Built from values (an author; tests and their forgeries): commit to them, with the salts
        # given, else salts derived from the delta's own coordinates. An honest node always passes
        # random salts (Store.write_delta), and a receiver never derives anything: parse checks
        # the openings it was sent, and a parsed delta's commitments already match.
        if self.values and not self._committed():
            salts = {name: self.salts.get(name) or _derived_salt(self.origin, self.seq, name) for name in self.values}
            object.__setattr__(self, "salts", salts)
            object.__setattr__(self, "commitments",
                               {name: commitment(name, bytes.fromhex(salt), self.values[name])
                                for name, salt in salts.items()})

    def _committed(self) -> bool:
        c, salts = self.commitments, self.salts
        return all(n in c and n in salts and commitment(n, bytes.fromhex(salts[n]), v) == c[n]
                   for n, v in self.values.items())

    @property
    def fields(self) -> frozenset[str]:
        """Every field this delta writes (opened or not)."""
        return frozenset(self.commitments)

    def openings(self, names: Iterable[str] | None = None) -> bytes:
        """The openings of ``names`` (default: every opened field), to travel beside the body."""
        chosen = self.values if names is None else {n: self.values[n] for n in names if n in self.values}
        return canonical.dumps({n: [self.salts[n], v] for n, v in chosen.items()})

    @property
    def newer(self) -> bool:
        """Written by a newer release (a higher protocol version than this release's)."""
        return self.version > PROTOCOL

    @property
    def province(self) -> str:
        """The author's province code (only province nodes author deltas)."""
        return self.origin.removeprefix("province-")

    @property
    def order(self) -> tuple[int, int]:
        """Where this delta stands among its author's own: (epoch, seq)."""
        return (self.epoch, self.seq)

    def to_body(self) -> bytes:
        body = {
            "v": self.version, "kind": self.kind, "id": self.record_id, "origin": self.origin,
            "epoch": self.epoch, "seq": self.seq, "at": self.at.to_json(), "op": self.op,
            "operator": self.operator, "deps": sorted(self.deps), "accepts": sorted(self.accepts),
            "set": dict(self.commitments), "routes": sorted(self.routes), "chain": dict(self.chain),
            "merges": sorted(self.merges),
        }
        if self.legacy:  # only then: every other delta's bytes stay as they were
            body["legacy"] = True
        return canonical.dumps(body)


def _shown(name: str) -> str:
    """A key a peer chose, as a refusal reason may name it: at most MAX_ID characters, lone
    surrogates and NUL escaped (the reason is stored as text, on PostgreSQL too, and logged)."""
    return name[:MAX_ID].encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


def _hashes(obj: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or len(value) > MAX_DEPS:
        raise Malformed(f"{key}: must be a list of at most {MAX_DEPS} delta hashes")
    for h in value:
        if not (isinstance(h, str) and len(h) == 64 and _HEX.issuperset(h)):
            raise Malformed(f"{key}: each entry must be a 64-character lowercase hex SHA-256")
    if value != sorted(set(value)):
        raise Malformed(f"{key}: must be sorted and without repeats")
    return tuple(value)


def _int(obj: Mapping[str, object], key: str, low: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not low <= value < 2**63:
        raise Malformed(f"{key}: must be an integer in {low}..2**63-1")
    return value


def parse(body: bytes, openings: bytes = b"{}", *, complete: bool = True) -> Delta:
    """Decode exactly these bytes, and the openings that came with them, into a Delta, or raise
    Malformed naming the key.

    Every opening must match its commitment. ``complete`` (the default) also requires an
    opening for every field the delta writes: a delta its author sends is whole; only a relay
    to a newly involved province may leave superseded values out (design doc 8.1).
    Only the envelope's shape is checked here: field values are the record kind's validator's
    business, and authority is core.graph's. A newer release's delta (``v`` above PROTOCOL) may
    carry top-level keys this release does not know: they are kept in the signed bytes only
    (mixed versions within v2); in a v2 delta an unknown key is refused.
    """
    if len(body) > MAX_BODY:
        raise Malformed(f"body: {len(body)} bytes is over the {MAX_BODY}-byte limit")
    obj = canonical.loads(body)
    if not isinstance(obj, dict):
        raise Malformed("body: must be a JSON object")
    version = obj.get("v")
    if type(version) is not int or not PROTOCOL <= version < 2**63:
        raise Malformed(f"v: protocol version {version!r} is not {PROTOCOL} or a later integer")
    extra = sorted(set(obj) - _KEYS)
    if extra and version == PROTOCOL:  # a newer release may add keys: they stay in the signed bytes
        raise Malformed(f"{_shown(extra[0])}: not a field of a v{PROTOCOL} delta")
    kind, record_id, origin = obj.get("kind"), obj.get("id"), obj.get("origin")
    if not isinstance(kind, str) or not kind:
        raise Malformed("kind: must be a non-empty string")
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= MAX_ID:
        raise Malformed(f"id: must be 1..{MAX_ID} characters")
    if not isinstance(origin, str):
        raise Malformed("origin: must be a string")
    try:
        ident = Identity.parse(origin)
    except ValueError as err:
        raise Malformed(f"origin: {err}") from None
    if ident.role != "province":
        raise Malformed(f"origin: {origin} is not a province node; only provinces author deltas")
    op = obj.get("op")
    if op not in OPS:
        raise Malformed(f"op: {op!r} is not one of {', '.join(OPS)}")
    operator = obj.get("operator")
    if operator is not None and not (isinstance(operator, str) and len(operator) <= 96):
        raise Malformed("operator: must be null or a string of at most 96 characters")
    commitments = obj.get("set")
    if not isinstance(commitments, dict) or len(commitments) > MAX_FIELDS:
        raise Malformed(f"set: must be an object of at most {MAX_FIELDS} field -> commitment")
    for name, c in commitments.items():
        if len(name) > MAX_ID or not (isinstance(c, str) and len(c) == 64 and _HEX.issuperset(c)):
            raise Malformed(f"set.{_shown(name)}: must be a 64-character lowercase hex commitment")
    values, salts = _opened(openings, commitments, complete)
    routes = obj.get("routes")
    if not isinstance(routes, list) or any(not (isinstance(p, str) and p in PROVINCES) for p in routes):
        raise Malformed("routes: must be a list of province codes")
    if routes != sorted(set(routes)):
        raise Malformed("routes: must be sorted and without repeats")
    chain = obj.get("chain")
    if not isinstance(chain, dict) or any(type(n) is not int or not 0 < n < 2**63 for n in chain.values()):
        raise Malformed("chain: must be an object of destination -> counter (1..2**63-1)")
    deps, accepts = _hashes(obj, "deps"), _hashes(obj, "accepts")
    if (op == "create") == bool(deps):
        raise Malformed("deps: a create depends on nothing, and every other delta on the record's heads")
    if (op in ("accept", "refuse")) != bool(accepts):
        raise Malformed("accepts: names the claims an accept lets in (or a refuse turns away), and only those have it")
    if not set(accepts) <= set(deps):
        raise Malformed("accepts: every accepted claim must also be a dependency")
    merges = obj.get("merges")
    if (not isinstance(merges, list) or len(merges) > MAX_MERGES
            or any(not (isinstance(m, str) and 1 <= len(m) <= MAX_ID) for m in merges)):
        raise Malformed(f"merges: must be a list of at most {MAX_MERGES} record ids")
    if merges != sorted(set(merges)) or record_id in merges:
        raise Malformed("merges: must be sorted, without repeats, and not name the record itself")
    if (op == "alias") != bool(merges):
        raise Malformed("merges: names the records an alias takes in, and only an alias has it")
    legacy = "legacy" in obj
    if legacy and obj["legacy"] is not True:
        raise Malformed("legacy: must be true when present (a v2 baseline); any other delta leaves it out")
    if legacy and op != "create":
        raise Malformed(f"legacy: only a create can be a baseline, not {op!r}")
    at = Timestamp.from_json(obj.get("at"))
    if at.node != origin:
        raise Malformed(f"at: a timestamp of {at.node!r} on a delta by {origin}")
    return Delta(kind, record_id, origin, _int(obj, "epoch", 0), _int(obj, "seq", 1), at, op, operator,
                 deps, accepts, values, frozenset(routes), chain, tuple(merges), commitments, salts, legacy,
                 version)


def _opened(openings: bytes, commitments: Mapping[str, str], complete: bool) -> tuple[dict, dict]:
    """The values and salts of ``openings``, each checked against its commitment."""
    if len(openings) > MAX_BODY:
        raise Malformed(f"openings: {len(openings)} bytes is over the {MAX_BODY}-byte limit")
    obj = canonical.loads(openings)
    if not isinstance(obj, dict):
        raise Malformed("openings: must be an object of field -> [salt, value]")
    values: dict[str, object] = {}
    salts: dict[str, str] = {}
    for name, pair in obj.items():
        if name not in commitments:
            raise Malformed(f"openings.{_shown(name)}: opens a field the delta does not write")
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and len(pair[0]) == 2 * SALT_BYTES and _HEX.issuperset(pair[0])):
            raise Malformed(f"openings.{_shown(name)}: must be [{SALT_BYTES}-byte hex salt, value]")
        salt, value = pair
        if isinstance(value, (dict, list)):
            raise Malformed(f"openings.{_shown(name)}: a field value must be a scalar")
        try:
            committed = commitment(name, bytes.fromhex(salt), value)
        except UnicodeEncodeError:  # a lone UTF-16 surrogate (a JSON escape) has no bytes to commit to
            raise Malformed(f"openings.{_shown(name)}: a value holds a lone UTF-16 surrogate") from None
        if committed != commitments[name]:
            raise Malformed(f"openings.{_shown(name)}: does not match its commitment")
        values[name], salts[name] = value, salt
    if values.get(DELETED, False) not in (True, False):
        raise Malformed(f"set.{DELETED}: must be true or false")
    if complete and len(values) != len(commitments):
        missing = sorted(set(commitments) - set(values))
        raise Malformed(f"openings.{_shown(missing[0])}: missing; the author's delta opens every field it writes")
    return values, salts
