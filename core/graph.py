"""One record's signed history, and the state it makes (v2; docs/design/v2-wire.md, section 3).

How this works. A replica holds, per record, the verified deltas whose
dependencies it also holds. The record's state is a function of that set
alone, so replicas that hold the same deltas agree, whatever order they came in:

* Causality is the dependency graph. A version (one delta's value for one
  field) survives unless a counted delta that also sets the field descends
  from it. Survivors with different values are an open conflict; the shown
  value is the greatest (HLC time, author, value bytes), as in v1. No clock
  entry is ever taken from a peer: order is ancestry.
* Authority is decided on the history *at the delta* (the closure of its
  dependencies), as Matrix decides auth on the state at an event: a delta
  counts only if its author is involved in the record there, and its signed
  routes must be what that history says. These checks read the delta and its
  ancestors only, so every replica decides them alike, and a delta that
  fails them is refused on receipt and never held.
* Creates found the record by rank (``_founders``); a create that neither
  founds nor is named by the founders is a *claim*: held, counted for nothing,
  until an involved province's ``accept`` lists it. Nothing that descends from
  an uncounted create counts either, so a claimer cannot write its way in.
* An author's deltas on a record form a chain. A delta that does not descend
  from an earlier delta of its own author is *backdated* and counts for
  nothing. Two different deltas of one author with the same (epoch, seq) are
  both kept, and the author is flagged as *equivocating*.
* A delta whose dependencies are not all held is *parked* (durably, by the
  caller) until they are; one stamped more than 24 h ahead of the receiver's
  clock is parked until it no longer is.

Pure: no I/O, no clock; time and identity are arguments. Status: groundwork for
the v2 wire format, property-tested in tests/unit/test_graph.py; the running
federation still speaks v1 (core.record, core.change).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from core import canonical
from core.delta import Delta, delta_id
from core.errors import SyncError
from core.hlc import Timestamp
from core.record import DELETED

MAX_LEAD_MS = 24 * 3600 * 1000

HELD, PARKED, REFUSED, DUPLICATE = "held", "parked", "refused", "duplicate"
TIME = "time"  # what a delta stamped too far ahead waits for
BASELINE = "baseline"  # what a delta on a record held here with v1 history waits for (core.baseline)


class _Withheld:
    """The value of a field whose opening this replica was not sent (a relay leaves superseded
    values out, design doc 8.1): the field is known to be written, its value is not."""

    def __repr__(self) -> str:
        return "WITHHELD"


WITHHELD = _Withheld()


@dataclass(frozen=True, slots=True)
class Rules:
    """What the graph needs to know about a record kind."""

    involved: Callable[[Mapping[str, object]], frozenset[str]]  # provinces one value of each field involves
    routing_fields: tuple[str, ...]
    anchor: str | None = None  # the field naming the founding province (a person's household)
    arbiter: Callable[[Mapping[str, object]], str | None] = lambda values: None  # breaks ties between founders
    # (values at the deps with the delta's on top, the delta's values, author province) -> why the
    # author may not write them, or None: a kind's own rule of who writes which field (a request's
    # answer is the receiver's), judged on the history like involvement.
    writers: Callable[[Mapping[str, object], Mapping[str, object], str], str | None] = lambda shown, written, author: None
    arbiter_fields: tuple[str, ...] = ()  # the fields ``arbiter`` reads (a relay always opens them on creates)
    baseline_by: str | None = None  # the field naming the province that signs a record's v2 baseline


@dataclass(frozen=True, slots=True)
class Version:
    value: object
    delta: str
    at: Timestamp
    origin: str

    def rank(self) -> tuple[int, int, str, bytes]:
        return (self.at.wall_ms, self.at.logical, self.origin, _value_bytes(self.value))


@dataclass(frozen=True)
class View:
    """The record one set of deltas makes."""

    fields: Mapping[str, tuple[Version, ...]] = field(default_factory=dict)  # survivors, winner first
    involved: frozenset[str] = frozenset()
    counted: frozenset[str] = frozenset()  # deltas whose versions count
    claims: frozenset[str] = frozenset()  # creates held apart, waiting for an accept
    refused: Mapping[str, str] = field(default_factory=dict)  # claims a counted refuse turned away -> its origin
    backdated: frozenset[str] = frozenset()
    equivocating: frozenset[str] = frozenset()  # origins seen signing two deltas at one (epoch, seq)
    disputed: bool = False  # two provinces each found the record (design doc, 3.2a)
    founders: frozenset[str] = frozenset()
    rank: int | None = None  # the founders' rank: 0 = the household the resident ID names
    founded_by: Mapping[str, str] = field(default_factory=dict)  # founder id -> its province

    def confirmed_for(self, province: str) -> bool:
        """Whether an honest ``province`` should write on this record: founded by the household
        its resident ID names, or by ``province`` itself. Anything else may still be a claim that a
        later founding create turns aside (design doc 3.2a), so a node keeps its operators off it."""
        if self.disputed or not self.founders:
            return False
        return self.rank == 0 or self._founder_provinces == {province}

    @property
    def _founder_provinces(self) -> set[str]:
        return set(self.founded_by.values())

    def values(self) -> dict[str, object]:
        return {k: vs[0].value for k, vs in sorted(self.fields.items()) if k != DELETED}

    @property
    def deleted(self) -> bool:
        vs = self.fields.get(DELETED)
        return bool(vs and vs[0].value is True)

    def conflicts(self) -> dict[str, tuple[Version, ...]]:
        return {k: vs for k, vs in sorted(self.fields.items())
                if len({_value_bytes(v.value) for v in vs}) > 1}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # HELD, PARKED, REFUSED or DUPLICATE
    reason: str = ""
    waiting_for: frozenset[str] = frozenset()  # delta ids (or TIME) a parked delta needs
    released: tuple[str, ...] = ()  # parked deltas this one let in


class RecordGraph:
    """The deltas one replica holds for one record."""

    def __init__(self, kind: str, record_id: str, rules: Rules) -> None:
        self.kind, self.record_id, self.rules = kind, record_id, rules
        # Records an alias takes (or may take) into this one: their deltas are held here too,
        # and count once an alias that counts names them (``person link``).
        self.related: set[str] = set()
        self.held: dict[str, Delta] = {}
        self.parked: dict[str, tuple[Delta, str, frozenset[str]]] = {}  # id -> (delta, signer, waiting for)
        self._anc: dict[str, frozenset[str]] = {}
        self._view: View | None = None
        # The record has v1 history here (set by the loader): its v2 history starts at its baseline, so
        # nothing else is held before it, lest another create stand for the record's v1 state meanwhile.
        self.legacy = False

    # -- restoring (a store loading what it decided before) -------------------------------------
    def restore(self, held: Iterable[tuple[str, Delta]],
                parked: Iterable[tuple[str, Delta, str, frozenset[str]]] = ()) -> None:
        """Put back deltas this replica already decided on, without deciding again.

        ``held`` must come in an order where each delta follows its dependencies (a store's log
        order is one: a delta is held only after them); ``parked`` is (id, delta, signer, waiting
        for). Deciding again could differ (the clock has moved on), and the decision was durable.
        """
        for did, delta in held:
            self.held[did] = delta
            self.related.update(delta.merges)
        for did, delta, author, waiting in parked:
            self.parked[did] = (delta, author, waiting)
            self.related.update(delta.merges)
        self._view = None

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, did: str, delta: Delta, *, author: str, now_ms: int) -> Decision:
        """Hold, park or refuse one verified delta; ``author`` is who signed it."""
        if did in self.held or did in self.parked:
            return Decision(DUPLICATE)
        decision = self._admit(did, delta, author, now_ms)
        if decision.outcome == PARKED:
            self.parked[did] = (delta, author, decision.waiting_for)
            return decision
        if decision.outcome != HELD:
            return decision
        released = self._release(now_ms)
        return Decision(HELD, released=released)

    def release(self, now_ms: int) -> tuple[str, ...]:
        """Re-check parked deltas (call when the clock has moved on); returns those now held."""
        return self._release(now_ms)

    def _release(self, now_ms: int) -> tuple[str, ...]:
        out: list[str] = []
        progress = True
        while progress:
            progress = False
            for did, (delta, author, waiting) in sorted(self.parked.items()):
                if TIME not in waiting and not all(d in self.held or (d == BASELINE and self._baselined())
                                                   for d in waiting):
                    continue
                del self.parked[did]
                decision = self._admit(did, delta, author, now_ms)
                if decision.outcome == PARKED:
                    self.parked[did] = (delta, author, decision.waiting_for)
                elif decision.outcome == HELD:
                    out.append(did)
                    progress = True
        return tuple(out)

    def _admit(self, did: str, delta: Delta, author: str, now_ms: int) -> Decision:
        refuse = _refusal
        if delta.kind != self.kind or (delta.record_id != self.record_id and delta.record_id not in self.related):
            return refuse(f"id: the delta is for {delta.kind} {delta.record_id}, not this record")
        self.related.update(delta.merges)  # the records it takes in: their deltas may come here now
        if author != delta.origin:
            return refuse(f"origin: claims {delta.origin} but is signed by {author}")
        missing = frozenset(d for d in delta.deps if d not in self.held)
        if missing:
            return Decision(PARKED, f"waiting for {len(missing)} dependencies", missing)
        if self.awaits_baseline and not delta.legacy and delta.record_id == self.record_id:
            return Decision(PARKED, "the record has v1 history here: waiting for its baseline", frozenset({BASELINE}))
        for dep in delta.deps:
            if self.held[dep].at > delta.at:
                return refuse(f"at: earlier than its dependency {dep[:12]}")
        if delta.at.wall_ms > now_ms + MAX_LEAD_MS:
            return Decision(PARKED, "stamped more than 24 h ahead of this replica's clock", frozenset({TIME}))
        if delta.record_id != self.record_id and any(self.held[d].record_id != delta.record_id for d in delta.deps):
            return refuse(f"deps: a delta on {delta.record_id} may depend only on that record's deltas")
        dep_records = {self.held[d].record_id for d in delta.deps}
        if not set(delta.merges) <= dep_records:
            return refuse("merges: an alias must depend on the heads of every record it takes in")
        closure = self._closure(delta.deps)
        for a in closure:
            own = self.held[a]
            if own.origin == delta.origin and own.order >= delta.order:
                return refuse(f"seq: ({delta.epoch}, {delta.seq}) is not after its author's earlier "
                              f"({own.epoch}, {own.seq}) on this record")
        before = self.evaluate(closure, record=delta.record_id)
        mine = delta.province
        if delta.legacy:
            problem = self._baseline_problem(delta)
            if problem is not None:
                return refuse(problem)
        if delta.op == "create":
            if mine not in self._involves(delta.values):
                return refuse(f"unauthorised: a create by {delta.origin} must involve its author")
        elif mine not in before.involved:
            return refuse(f"unauthorised: {delta.origin} is not involved in the record at its dependencies "
                          f"(it involves {', '.join(sorted(before.involved)) or 'nobody'})")
        for merged in delta.merges:
            theirs = self.evaluate(self._closure(d for d in delta.deps if self.held[d].record_id == merged),
                                   record=merged)
            if mine not in theirs.involved:
                return refuse(f"unauthorised: {delta.origin} is not involved in {merged}, which it would take in "
                              f"(it involves {', '.join(sorted(theirs.involved)) or 'nobody'})")
            before = replace(before, involved=before.involved | theirs.involved)
        # A baseline carries the record's v1 state, every writer's fields in it (vouched for by its
        # household province and marked legacy), so the per-field writer rule does not judge it.
        problem = None if delta.legacy else self.rules.writers({**before.values(), **delta.values}, delta.values, mine)
        if problem is not None:
            return refuse(f"unauthorised: {problem}")
        for claim in delta.accepts:
            if claim not in before.claims:
                return refuse(f"accepts: {claim[:12]} is not a claim waiting in this record")
        self.held[did] = delta  # tentatively, to compute what the record is after it
        self._view = None
        after = self.evaluate(self._closure((did,)) | {did}, record=delta.record_id)
        required = before.involved | after.involved
        if delta.routes != required:
            del self.held[did]
            self._anc.pop(did, None)
            return refuse(f"routes: {', '.join(sorted(delta.routes)) or 'none'} is not what the history "
                          f"says ({', '.join(sorted(required)) or 'none'})")
        if delta.record_id == self.record_id and len(self._closure((did,))) == len(self.held):
            self._view = after  # built on every held delta (the usual write on the heads): the view itself
        return Decision(HELD)

    # -- reading ---------------------------------------------------------------------------------
    def view(self) -> View:
        if self._view is None:
            self._view = self.evaluate(frozenset(self.held))
        return self._view

    def heads(self, record: str | None = None) -> tuple[str, ...]:
        """What an honest write depends on: the counted deltas nothing counted descends from
        (of ``record``, a record an alias may take in, when given)."""
        if record is None or record == self.record_id:
            counted = self.view().counted
        else:
            counted = self.evaluate((d for d, x in self.held.items() if x.record_id == record), record=record).counted
        inner = set().union(*(self._ancestors(d) for d in counted)) if counted else set()
        return tuple(sorted(counted - inner))

    def evaluate(self, ids: Iterable[str], record: str | None = None) -> View:
        """The record made by these held deltas (a set closed under dependencies).

        ``record`` (default: this graph's) is the one whose creates found it; the creates of a
        record an alias takes in are admitted by that record's own founders, and count here only
        once an alias that counts names it."""
        ids = frozenset(ids)
        primary = self.record_id if record is None else record
        held, anc = self.held, self._ancestors
        creates = [d for d in ids if held[d].op == "create"]
        by_record: dict[str, list[str]] = {}
        for c in creates:
            by_record.setdefault(held[c].record_id, []).append(c)
        founders, disputed, rank = self._founders(by_record.get(primary, []))
        admitted = self._admitted(by_record.get(primary, []), founders, disputed)
        elsewhere: dict[str, set[str]] = {}  # admitted by each other record's own founders
        for rid, cs in by_record.items():
            if rid != primary:
                f, dis, _ = self._founders(cs)
                elsewhere[rid] = self._admitted(cs, f, dis)
        by_order: dict[tuple[str, tuple[int, int]], set[str]] = {}
        for d in ids:
            by_order.setdefault((held[d].origin, held[d].order), set()).add(d)
        equivocating = frozenset(origin for (origin, _), same in by_order.items() if len(same) > 1)
        backdated = self._backdated(ids)
        create_set = frozenset(creates)

        def creates_in(d: str) -> set[str]:  # the creates ``d`` descends from (few: checked against each)
            ancestors = anc(d)
            return {c for c in create_set if c in ancestors}
        accepts = sorted(d for d in ids if held[d].op == "accept" and d not in backdated)
        aliases = sorted(d for d in ids if held[d].op == "alias" and d not in backdated
                         and held[d].record_id == primary)
        grew = True
        while grew:  # an accept or alias that counts lets creates in, which may let a later one count
            grew = False
            for d in accepts:
                claims = set(held[d].accepts)
                if not claims <= admitted and creates_in(d) <= admitted | claims:
                    admitted |= claims
                    grew = True
            for d in aliases:
                taken = set().union(*(elsewhere.get(m, set()) for m in held[d].merges))
                if not taken <= admitted and creates_in(d) <= admitted | taken:
                    admitted |= taken
                    grew = True
        counted = frozenset(
            d for d in ids
            if d not in backdated and (d in admitted if held[d].op == "create" else creates_in(d) <= admitted))
        fields: dict[str, list[str]] = {}
        for d in counted:
            for name in held[d].fields:
                fields.setdefault(name, []).append(d)
        survivors: dict[str, tuple[Version, ...]] = {}
        for name, writers in fields.items():
            # The writers no other writer descends from. Descendants have more ancestors, so taking
            # writers by ancestor count, largest first, an ancestor of any writer comes after one
            # kept that it is an ancestor of (transitivity): one look per writer kept, not per pair.
            alive: list[str] = []
            for d in sorted(writers, key=lambda w: (-len(anc(w)), w)):
                if not any(d in anc(a) for a in alive):
                    alive.append(d)
            versions = [Version(held[d].values.get(name, WITHHELD), d, held[d].at, held[d].origin) for d in alive]
            survivors[name] = tuple(sorted(versions, key=_order, reverse=True))
        involved: set[str] = set()
        for name in self.rules.routing_fields:
            for v in survivors.get(name, ()):
                involved |= self._involves({name: v.value})
        # A refuse descends from the claims it names (they are its dependencies), so it never counts
        # itself; it turns them away if everything else it descends from counts.
        refused = {c: held[d].origin for d in sorted(ids)
                   if held[d].op == "refuse" and d not in backdated
                   and creates_in(d) - set(held[d].accepts) <= admitted
                   for c in held[d].accepts if c not in admitted}
        return View(survivors, frozenset(involved), counted,
                    frozenset(c for c in creates if c not in admitted and c not in refused), refused, backdated,
                    equivocating, disputed, frozenset(founders), rank, {d: held[d].province for d in founders})

    # -- writing (what an honest author does) ----------------------------------------------------
    def write(self, values: Mapping[str, object], *, origin: str, epoch: int, seq: int, at: Timestamp,
              op: str = "update", operator: str | None = None, accepts: tuple[str, ...] = (),
              merges: tuple[str, ...] = (), now_ms: int | None = None,
              salt: Callable[[], bytes] | None = None, legacy: bool = False,
              chain: Callable[[frozenset[str]], Mapping[str, int]] | None = None) -> tuple[str, Delta, bytes]:
        """Build, hold and return this author's next delta: (id, delta, signed-to-be body).
        An alias (``merges``: records held here, ``related``) depends on their heads too.
        ``salt`` gives each field's commitment salt (a node passes random bytes; see core.delta);
        ``legacy``: a v2 baseline (core.baseline), whose values carry ``_deleted`` as the record had it;
        ``chain(routes)`` the per-destination counters it carries (core.receipts), once its routes
        are known."""
        body_values = dict(values)
        if op in ("create", "update", "settle", "delete") and not legacy:
            body_values[DELETED] = op == "delete"
        taken = set().union(*(self.heads(m) for m in merges))
        deps = () if op == "create" else tuple(sorted(set(self.heads()) | set(accepts) | taken))
        draft = Delta(self.kind, self.record_id, origin, epoch, seq, at, op, operator, deps,
                      tuple(sorted(accepts)), body_values, frozenset(), {}, tuple(sorted(merges)), {},
                      {n: salt().hex() for n in body_values} if salt is not None else {}, legacy)
        closure = self._closure(deps)
        before = self.evaluate(closure)
        self.held["draft"] = draft
        try:
            after = self.evaluate(closure | {"draft"})
        finally:
            del self.held["draft"]
            self._anc.pop("draft", None)
        involved = set(before.involved)
        for m in merges:  # the provinces of each record taken in are told too
            involved |= self.evaluate(self._closure(d for d in deps if self.held[d].record_id == m), record=m).involved
        routes = frozenset(involved) | after.involved
        final = replace(draft, routes=routes, chain=dict(chain(routes)) if chain is not None else {})
        body = final.to_body()
        did = delta_id(body)
        decision = self.receive(did, final, author=origin, now_ms=at.wall_ms if now_ms is None else now_ms)
        if decision.outcome != HELD:
            raise ValueError(f"own write not held: {decision.outcome} {decision.reason}")
        return did, final, body

    # -- relaying to a newly involved province (design doc 3.5, 8.1) ----------------------------------
    def relay(self) -> list[tuple[str, Delta, frozenset[str]]]:
        """What a province that becomes involved needs, and no more: (id, delta, fields to open),
        ancestors first.

        Every counted delta and its ancestors travel (each verifies under its writer's
        signature, and a delta is held only with its dependencies), but only these values are
        opened: the surviving ones, every routing value (the authority chain: who was involved
        at each delta), and on creates what ranks the founders. Superseded values of other
        fields stay behind their commitments."""
        view = self.view()
        wanted = self._closure(view.counted)
        survivors: dict[str, set[str]] = {}
        for name, versions in view.fields.items():
            for v in versions:
                survivors.setdefault(v.delta, set()).add(name)
        auth = set(self.rules.routing_fields)
        founding = auth | ({self.rules.anchor} if self.rules.anchor else set()) | set(self.rules.arbiter_fields)
        out = []
        for did in sorted(wanted, key=lambda d: (len(self._ancestors(d)), d)):  # an ancestor has fewer ancestors
            delta = self.held[did]
            names = survivors.get(did, set()) | (founding if delta.op == "create" else auth)
            out.append((did, delta, frozenset(n for n in names if n in delta.values)))
        return out

    # -- helpers ---------------------------------------------------------------------------------
    def _baselined(self) -> bool:
        return any(d.legacy and d.record_id == self.record_id for d in self.held.values())

    @property
    def awaits_baseline(self) -> bool:
        """The record has v1 history here and no v2 baseline yet: nothing else is held on it."""
        return self.legacy and not self._baselined()

    def _baseline_problem(self, delta: Delta) -> str | None:
        """Why a baseline (``legacy``) may not be held here, or None: only its household province
        signs it, as its record's first delta (design doc, section 6)."""
        field = self.rules.baseline_by
        if field is None:
            return f"legacy: a {self.kind} record has no v2 baseline"
        if delta.values.get(field) != delta.province:
            return (f"legacy: a baseline is signed by the province its {field} names, not {delta.origin}")
        if any(d.record_id == delta.record_id for d in self.held.values()):
            return f"legacy: a baseline must be the first delta of {delta.kind} {delta.record_id}, which has deltas here"
        return None

    def _involves(self, values: Mapping[str, object]) -> frozenset[str]:
        picked = {k: v for k, v in values.items() if k in self.rules.routing_fields}
        try:
            return self.rules.involved(picked)
        except (ValueError, TypeError, SyncError):  # a value the kind's validator would refuse involves no one
            return frozenset()

    def _involves_all(self, values: Iterable[Mapping[str, object]]) -> frozenset[str]:
        out: set[str] = set()
        for vs in values:
            for name in self.rules.routing_fields:
                if name in vs:
                    out |= self._involves({name: vs[name]})
        return frozenset(out)

    def _admitted(self, creates: list[str], founders: set[str], disputed: bool) -> set[str]:
        """The founders, and the creates the founders' values name (unless the record is disputed)."""
        named = self._involves_all(self.held[d].values for d in founders)
        return {c for c in creates if c in founders or (not disputed and self.held[c].province in named)}

    def _founders(self, creates: list[str]) -> tuple[set[str], bool, int | None]:
        """The creates that found the record, whether two provinces dispute it (design doc 3.2a),
        and the founders' rank."""
        if not creates:
            return set(), False, None
        anchor, arbiter = self.rules.anchor, self.rules.arbiter

        def rank(d: str) -> int:
            delta = self.held[d]
            if anchor is None or delta.values.get(anchor) != delta.province:
                return 2
            return 0 if arbiter(delta.values) == delta.province else 1

        best = min(rank(c) for c in creates)
        top = {c for c in creates if rank(c) == best}
        if len({self.held[c].province for c in top}) > 1:
            return set(), True, best
        return top, False, best

    def _backdated(self, ids: frozenset[str]) -> frozenset[str]:
        """The deltas among ``ids`` that do not descend from every earlier (epoch, seq) delta of their
        author on their record. Per (author, record), in order: every earlier one is an ancestor
        of d exactly when the *maximal* earlier ones (those no other earlier one descends from) are,
        by transitivity; so each delta is checked against that frontier, which is one delta for an
        honest author, instead of against every other delta."""
        held, anc = self.held, self._ancestors
        groups: dict[tuple[str, str], dict[tuple[int, int], list[str]]] = {}
        for d in ids:
            x = held[d]
            groups.setdefault((x.origin, x.record_id), {}).setdefault(x.order, []).append(d)
        out: set[str] = set()
        for by_order in groups.values():
            frontier: set[str] = set()
            for order in sorted(by_order):
                same = by_order[order]
                for d in same:
                    ancestors = anc(d)
                    if any(f not in ancestors for f in frontier):
                        out.add(d)
                for d in same:  # twins (equivocation) are both later than what came before, not each other
                    frontier = {f for f in frontier if f not in anc(d)}
                frontier |= set(same)
        return frozenset(out)

    def _creates_in(self, d: str, ids: frozenset[str]) -> set[str]:
        return {a for a in self._ancestors(d) if a in ids and self.held[a].op == "create"}

    def _closure(self, ids: Iterable[str]) -> frozenset[str]:
        out: set[str] = set()
        for d in ids:
            out.add(d)
            out |= self._ancestors(d)
        return frozenset(out)

    def ancestors(self, did: str) -> frozenset[str]:
        """Every held delta that ``did`` (a held delta) descends from."""
        return self._ancestors(did)

    def _ancestors(self, did: str) -> frozenset[str]:
        """Every delta ``did`` descends from (memoised; iterative, so long histories don't recurse)."""
        memo = self._anc
        if did in memo:
            return memo[did]
        stack = [did]
        while stack:
            top = stack[-1]
            pending = [p for p in self.held[top].deps if p not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if top not in memo:
                acc: set[str] = set()
                for p in self.held[top].deps:
                    acc.add(p)
                    acc |= memo[p]
                memo[top] = frozenset(acc)
        return memo[did]


def _value_bytes(value: object) -> bytes:
    return b"\xff withheld" if value is WITHHELD else canonical.scalar_bytes(value)


def _order(v: Version) -> tuple[tuple[int, int, str, bytes], str]:
    return (v.rank(), v.delta)  # the id settles ties (an equivocating author's twin values)


def _refusal(reason: str) -> Decision:
    return Decision(REFUSED, reason)
