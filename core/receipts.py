"""Per-destination counters and cumulative receipts: how an author knows what arrived.

How this works (docs/design/v2-wire.md, section 4; issue 17). A hub's ack says only that the
hub took custody. To know that a change *arrived*, the author numbers what it routes to each
destination: ``chain[d]`` is 1, 2, 3, ... over the deltas this origin (in this key epoch)
routed to ``d``, and is signed in the delta. Then:

* a destination that holds counters 1..17 and 19 knows 18 is missing, with no ambiguity from
  writes that went elsewhere (``Inbox.gaps``);
* it answers with one cumulative receipt per origin: the ranges it holds, parked and refused
  (a parked or refused delta is answered too, so it is not resent for ever), signed by the
  destination (the signing itself lives in certs/);
* the author keeps each counter owed to its destination until a receipt covers it
  (``Ledger``), shows the oldest unreceipted one and its age, and decides what to re-send.

Receipts are cumulative and merge by union, so a late or repeated receipt never takes back
what an earlier one said, and one per second per stream is enough whatever the traffic.

Pure: no clock, no I/O; times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core import canonical
from core.errors import Malformed

Range = tuple[int, int]  # first..last, inclusive
HELD, PARKED, REFUSED = "held", "parked", "refused"
MAX_RANGES = 256  # per outcome in one receipt: a receipt stays small whatever a peer does


def normalise(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sorted, disjoint, non-adjacent ranges covering exactly what ``ranges`` cover."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def covers(ranges: tuple[Range, ...], n: int) -> bool:
    return any(lo <= n <= hi for lo, hi in ranges)


def without(ranges: Iterable[Range], taken: Iterable[Range]) -> tuple[Range, ...]:
    """``ranges`` minus ``taken``."""
    out: list[Range] = []
    cut = normalise(taken)
    for lo, hi in normalise(ranges):
        start = lo
        for clo, chi in cut:
            if chi < start or clo > hi:
                continue
            if clo > start:
                out.append((start, clo - 1))
            start = max(start, chi + 1)
        if start <= hi:
            out.append((start, hi))
    return tuple(out)


@dataclass(frozen=True)
class Receipt:
    """What destination ``dest`` durably holds of ``origin``'s counters to it, in key epoch ``epoch``."""

    dest: str
    origin: str
    epoch: int
    held: tuple[Range, ...] = ()
    parked: tuple[Range, ...] = ()
    refused: tuple[Range, ...] = ()

    @property
    def covered(self) -> tuple[Range, ...]:
        return normalise(self.held + self.parked + self.refused)

    def merge(self, other: "Receipt") -> "Receipt":
        """Both receipts' knowledge (receipts only grow; a parked counter later held is held)."""
        if (other.dest, other.origin, other.epoch) != (self.dest, self.origin, self.epoch):
            raise ValueError("receipts of different streams do not merge")
        held = normalise(self.held + other.held)
        refused = without(normalise(self.refused + other.refused), held)
        parked = without(normalise(self.parked + other.parked), held + refused)
        return Receipt(self.dest, self.origin, self.epoch, held, parked, refused)

    def to_json(self) -> dict[str, object]:
        return {"dest": self.dest, "origin": self.origin, "epoch": self.epoch,
                "held": [list(r) for r in self.held], "parked": [list(r) for r in self.parked],
                "refused": [list(r) for r in self.refused]}


class Inbox:
    """A destination's side: what it got of each origin's counters, and what it answers."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self._got: dict[tuple[str, int], dict[str, list[Range]]] = {}

    def note(self, origin: str, epoch: int, n: int, outcome: str) -> None:
        """Counter ``n`` of (origin, epoch) arrived here and was held, parked or refused."""
        if outcome not in (HELD, PARKED, REFUSED) or n < 1:
            raise ValueError(f"outcome {outcome!r} / counter {n} is not a receipt entry")
        book = self._got.setdefault((origin, epoch), {HELD: [], PARKED: [], REFUSED: []})
        book[outcome] = list(normalise(book[outcome] + [(n, n)]))

    def restore(self, origin: str, epoch: int, held: Iterable[Range], parked: Iterable[Range],
                refused: Iterable[Range]) -> None:
        """Put back what a store kept of (origin, epoch): the ranges ``book`` gave it."""
        self._got[(origin, epoch)] = {HELD: list(normalise(held)), PARKED: list(normalise(parked)),
                                      REFUSED: list(normalise(refused))}

    def book(self, origin: str, epoch: int) -> tuple[tuple[Range, ...], tuple[Range, ...], tuple[Range, ...]]:
        """(held, parked, refused) as noted, each normalised on its own: what a store keeps."""
        book = self._got.get((origin, epoch), {HELD: [], PARKED: [], REFUSED: []})
        return tuple(book[HELD]), tuple(book[PARKED]), tuple(book[REFUSED])

    def receipt(self, origin: str, epoch: int) -> Receipt:
        book = self._got.get((origin, epoch), {HELD: [], PARKED: [], REFUSED: []})
        held = normalise(book[HELD])
        refused = without(book[REFUSED], held)
        parked = without(book[PARKED], held + refused)
        # Past MAX_RANGES the lowest are kept: the author settles its oldest first, and the rest
        # are covered by a later receipt once holes fill (re-sending them meanwhile is harmless).
        return Receipt(self.dest, origin, epoch, held[:MAX_RANGES], parked[:MAX_RANGES], refused[:MAX_RANGES])

    def gaps(self, origin: str, epoch: int) -> tuple[Range, ...]:
        """Counters below the highest one seen that have not arrived: dropped or still on the way."""
        r = self.receipt(origin, epoch)
        covered = r.covered
        if not covered:
            return ()
        return without(((1, covered[-1][1]),), covered)


@dataclass
class Owed:
    """One counter an author still owes a destination."""

    n: int
    sent_ms: int
    via: str  # the hub that took custody (blame names it)
    resent: int = 0


@dataclass
class Ledger:
    """The author's side: per destination, what is routed there and not yet receipted."""

    origin: str
    epoch: int
    next_counter: dict[str, int] = field(default_factory=dict)
    owed: dict[str, dict[int, Owed]] = field(default_factory=dict)
    receipts: dict[str, Receipt] = field(default_factory=dict)
    last_progress_ms: dict[str, int] = field(default_factory=dict)  # when each destination's receipts last grew

    def assign(self, destinations: Iterable[str], *, now_ms: int, via: str) -> dict[str, int]:
        """The counters for one new delta routed to ``destinations``; each is owed from now."""
        chain: dict[str, int] = {}
        for d in sorted(set(destinations)):
            n = self.next_counter.get(d, 0) + 1
            self.next_counter[d] = n
            chain[d] = n
            self.owed.setdefault(d, {})[n] = Owed(n, now_ms, via)
        return chain

    def receive(self, receipt: Receipt, *, now_ms: int) -> int:
        """Apply a verified receipt from ``receipt.dest``; returns how many counters it settled."""
        if (receipt.origin, receipt.epoch) != (self.origin, self.epoch):
            return 0
        d = receipt.dest
        before = self.receipts.get(d)
        merged = before.merge(receipt) if before is not None else receipt
        self.receipts[d] = merged
        if before is None or merged.covered != before.covered:
            self.last_progress_ms[d] = now_ms
        owed = self.owed.get(d, {})
        settled = [n for n in owed if covers(merged.covered, n)]
        for n in settled:
            del owed[n]
        return len(settled)

    def oldest(self) -> dict[str, tuple[int, int, str]]:
        """Per destination with anything owed: (counter, sent_ms, via hub) of the oldest owed."""
        out: dict[str, tuple[int, int, str]] = {}
        for d, owed in sorted(self.owed.items()):
            if owed:
                first = min(owed.values(), key=lambda o: (o.sent_ms, o.n))
                out[d] = (first.n, first.sent_ms, first.via)
        return out

    def due(self, *, now_ms: int, alert_ms: int, alive: Mapping[str, bool]) -> list[tuple[str, Owed]]:
        """What to re-send now: owed longer than ``alert_ms``, to a destination that ``alive`` says
        is answering (its receipts for other origins still advance), so a province that is simply
        down is not flooded. Each returned entry is stamped as re-sent now."""
        out: list[tuple[str, Owed]] = []
        for d, owed in sorted(self.owed.items()):
            if not alive.get(d, False):
                continue
            for n in sorted(owed):
                o = owed[n]
                if now_ms - o.sent_ms >= alert_ms:
                    o.sent_ms, o.resent = now_ms, o.resent + 1
                    out.append((d, o))
        return out


# -- the signed forms (signatures themselves: certs.signing, behind their own prefixes) ------------

MAX_COUNTER = 2**63 - 1


@dataclass(frozen=True)
class Custody:
    """A hub's signed word that it took custody of ``origin``'s seqs ``first..last`` at ``at_ms``:
    what blame rests on, with destination receipts, instead of an unsigned ack."""

    hub: str
    origin: str
    epoch: int
    first: int
    last: int
    at_ms: int

    def to_body(self) -> bytes:
        return canonical.dumps({"custody": 2, "hub": self.hub, "origin": self.origin, "epoch": self.epoch,
                                "first": self.first, "last": self.last, "at": self.at_ms})


def receipt_body(receipt: Receipt, at_ms: int) -> bytes:
    """The exact bytes a destination signs for ``receipt``, stamped with its time."""
    return canonical.dumps({"receipt": 2, **receipt.to_json(), "at": at_ms})


def parse_receipt(body: bytes) -> tuple[Receipt, int]:
    """(receipt, at_ms) from a destination's signed bytes, or Malformed naming the key."""
    obj = canonical.loads(body)
    if not isinstance(obj, dict) or obj.get("receipt") != 2:
        raise Malformed("receipt: not a v2 receipt")
    extra = sorted(set(obj) - {"receipt", "dest", "origin", "epoch", "held", "parked", "refused", "at"})
    if extra:
        raise Malformed(f"{extra[0]}: not a field of a receipt")
    for key in ("dest", "origin"):
        if not (isinstance(obj.get(key), str) and 1 <= len(obj[key]) <= 64):
            raise Malformed(f"{key}: must be an identity or province code")
    epoch, at = obj.get("epoch"), obj.get("at")
    if type(epoch) is not int or not 0 <= epoch <= MAX_COUNTER:
        raise Malformed("epoch: must be an integer in 0..2**63-1")
    if type(at) is not int or not 0 <= at <= MAX_COUNTER:
        raise Malformed("at: must be an integer in 0..2**63-1")
    parts = {}
    for key in (HELD, PARKED, REFUSED):
        ranges = obj.get(key)
        if not isinstance(ranges, list) or len(ranges) > MAX_RANGES:
            raise Malformed(f"{key}: must be a list of at most {MAX_RANGES} ranges")
        for r in ranges:
            if not (isinstance(r, list) and len(r) == 2 and all(type(n) is int for n in r)
                    and 1 <= r[0] <= r[1] <= MAX_COUNTER):
                raise Malformed(f"{key}: each range must be [first, last] with 1 <= first <= last < 2**63")
        parts[key] = normalise((a, b) for a, b in ranges)
    held = parts[HELD]
    refused = without(parts[REFUSED], held)
    parked = without(parts[PARKED], held + refused)
    return Receipt(obj["dest"], obj["origin"], epoch, held, parked, refused), at
