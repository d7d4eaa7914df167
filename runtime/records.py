"""Operator edits on a node's own records, and how records are shown.

The node validates an operator's input fully before anything is written: a
create is checked as a whole record, an update is checked field by field and
then by the cross-field rules its fields take part in (birth date vs id
number), on the merged record; fields it does not write are not judged again,
so a record holding a value a newer rule refuses can still be edited. Errors name the field and the reason.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Callable, Mapping, Sequence

from certs.signing import Signer
from core.errors import KeyUnusable, LocalError, NotFound, SyncError, ValidationError
from core.change import state_provinces
from core.identity import Identity
from core import request
from core.kinds import Kind, get_kind, open_conflicts, rule_conflicts
from core.personkey import check_record_id, is_person_key, person_key, random_key, valid_id_number
from core.record import RecordState
from runtime import follow, metrics
from runtime.people import Validated, add_person
from runtime.replica import Replica, now_ms
from store.store import Edit

OPS = ("create", "update", "delete", "settle")


def record_key(kind: str) -> str:
    return f"{kind}_id"


def shown(state: RecordState) -> dict[str, object]:
    """The record as operators and scripts see it: domain fields plus ``<kind>_id``."""
    return {record_key(state.kind): state.record_id, **state.values()}


def described(state: RecordState) -> dict[str, object]:
    """``shown`` plus version, deletion and conflicts, for the admin API."""
    conflicts = {
        name: [{"value": v.value, "writer": v.at.node, "at_ms": v.at.wall_ms, "clock": v.clock.to_json()}
               for v in versions]
        for name, versions in state.conflicts().items()
    }
    # A rule between fields that merging concurrent writes broke: each field's shown version, and the rule.
    for name, rule in rule_conflicts(state).items():
        if name not in conflicts and (v := state.winner(name)) is not None:
            conflicts[name] = [{"value": v.value, "writer": v.at.node, "at_ms": v.at.wall_ms,
                                "clock": v.clock.to_json(), "rule": rule}]
    conflicts = dict(sorted(conflicts.items()))
    return {**shown(state), "_meta": {"deleted": state.deleted, "clock": state.clock.to_json(),
                                      "conflicts": conflicts}}


def _noting(edit: Callable[[RecordState | None], tuple[str, Mapping[str, object]]],
            after: list[Mapping[str, object]]) -> Callable[[RecordState | None], tuple[str, Mapping[str, object]]]:
    """``edit``, noting the record's values after it (for the records that follow a person)."""
    def noted(current: RecordState | None) -> tuple[str, Mapping[str, object]]:
        result = edit(current)
        after.append({**(current.values() if current is not None else {}), **result[1]})
        return result
    return noted


class RecordService:
    def __init__(self, replica: Replica, signer: Signer, today: Callable[[], dt.date] = dt.date.today,
                 person_secret: bytes | None = None) -> None:
        self.replica = replica
        self.signer = signer
        self.today = today
        self.person_secret = person_secret  # the federation secret: person keys (core.personkey)
        self.people_lock = threading.Lock()  # a person's lookup by ID number and its write, together (runtime.people)

    def check_signing_key(self) -> None:
        """Refuse to write with a key the federation no longer trusts.

        A change signed with a revoked or expired key is quarantined by every hub, so a
        write accepted here would be reported as sent and then never arrive anywhere.
        The revocation list is re-read first, so a revocation takes effect at once.
        """
        self.replica.sync_revocations()
        key_id = self.signer.key_id
        if key_id not in self.replica.keyring:
            raise KeyUnusable(
                f"this node's signing key {key_id} is revoked: no peer would accept what it signs; "
                "install a new signing certificate ([signing] key/cert) and restart before writing")
        if dt.datetime.now(dt.timezone.utc) > self.signer.not_after:
            raise KeyUnusable(
                f"this node's signing certificate {key_id} expired at {self.signer.not_after.isoformat()}; "
                "install a new one ([signing] cert) and restart before writing")

    def write(self, op: str, kind: str, record_id: str, fields: Mapping[str, object],
              operator: str | None) -> RecordState:
        if kind == "person" and op == "create":  # never a second record of a person held here (runtime.people)
            return add_person(self, record_id, fields, operator)
        self.check_signing_key()
        if kind == "person" and op in ("update", "settle") and follow.moves(fields):
            return self._move(op, record_id, fields, operator)
        kind, record_id, edit = self.prepare(op, kind, record_id, fields)
        change = self.replica.store.write_local(kind, record_id, edit, operator=operator, now_ms=now_ms(),
                                             seal=self.signer.seal_batch)
        metrics.LOCAL_WRITES.labels(change.op).inc()
        return change.state

    def _move(self, op: str, person_id: str, fields: Mapping[str, object], operator: str | None) -> RecordState:
        """A write to a person's provinces, with the records that follow the person (runtime.follow)."""
        kind, person_id, edit = self.prepare(op, "person", person_id, fields)
        after: list[Mapping[str, object]] = []
        items = [(kind, person_id, _noting(_strict(edit), after))] + follow.edits(self.replica.store, person_id,
                                                                lambda: after[0] if after else None)
        try:
            results = self.replica.store.write_local_batch(items, operator=operator, now_ms=now_ms(),
                                                        seal=self.signer.seal_batch)
        except _Refusal as refusal:
            raise refusal.error from None
        for r in results:
            if not isinstance(r, SyncError):
                metrics.LOCAL_WRITES.labels(r.op).inc()
        return results[0].state  # type: ignore[union-attr]  # _strict raised any error as _Refusal

    def refollow(self, person_ids: Sequence[str]) -> list[RecordState]:
        """Rewrite the followers held here of each person whose provinces differ from the person's
        (node.refollow), as one local write of this node's: one transaction, one signature. A
        person this province is not involved in is left alone. Returns the followers written."""
        own = Identity.parse(self.replica.identity).province
        if own is None:
            raise LocalError(f"{self.replica.identity} is not a province: it writes no records")
        self.check_signing_key()
        items: list[follow.Item] = []
        for person_id in person_ids:
            items.extend(follow.repairs(self.replica.store, person_id, own))
        results = self.replica.store.write_local_batch(items, operator=None, now_ms=now_ms(),
                                                    seal=self.signer.seal_batch)
        written = [r for r in results if not isinstance(r, SyncError)]
        for r in written:
            metrics.LOCAL_WRITES.labels(r.op).inc()
        return [r.state for r in written]

    def write_all(self, rows: Sequence[tuple[str, str, str, Mapping[str, object]]],
                  operator: str | None) -> list[RecordState]:
        """Several writes as one transaction and one signature: all are written, or none and the
        first refusal is raised (issuing a certificate: the new one, the one it supersedes and
        the person, together)."""
        self.check_signing_key()
        items = [self.prepare(op, kind, record_id, fields) for op, kind, record_id, fields in rows]
        try:
            results = self.replica.store.write_local_batch([(k, r, _strict(e)) for k, r, e in items],
                                                        operator=operator, now_ms=now_ms(),
                                                        seal=self.signer.seal_batch)
        except _Refusal as refusal:
            raise refusal.error from None
        for r in results:
            metrics.LOCAL_WRITES.labels(r.op).inc()  # type: ignore[union-attr]  # as in _move: all Changes
        return [r.state for r in results]  # type: ignore[union-attr]  # as above

    def write_many(self, rows: Sequence[tuple[str, str, str, Mapping[str, object]]],
                   operator: str | None) -> list[RecordState | SyncError]:
        """Many writes, one transaction and one signature; a bad row is refused alone."""
        self.check_signing_key()
        out: list[int | SyncError] = []  # per row: its item's position, or why it was refused
        items: list[tuple[str, str, Callable[[RecordState | None], tuple[str, Mapping[str, object]]]]] = []
        for op, kind, record_id, fields in rows:
            try:
                kind, record_id, edit = self.prepare(op, kind, record_id, fields)
            except SyncError as err:
                out.append(err)
                continue
            out.append(len(items))
            if kind == "person" and op in ("update", "settle") and follow.moves(fields):
                # A move, as in write(): the records that follow the person move with it, in this batch.
                after: list[Mapping[str, object]] = []
                items.append((kind, record_id, _noting(edit, after)))
                items.extend(follow.edits(self.replica.store, record_id, lambda after=after: after[0] if after else None))  # type: ignore[misc]  # the default binds this row's list
            else:
                items.append((kind, record_id, edit))
        results = self.replica.store.write_local_batch(items, operator=operator, now_ms=now_ms(),
                                                    seal=self.signer.seal_batch)
        for r in results:
            if not isinstance(r, SyncError):
                metrics.LOCAL_WRITES.labels(r.op).inc()
        shown: list[RecordState | SyncError] = []
        for o in out:
            r = o if isinstance(o, SyncError) else results[o]
            shown.append(r if isinstance(r, SyncError) else r.state)
        return shown

    def prepare(self, op: str, kind: str, record_id: str,
                fields: Mapping[str, object]) -> tuple[str, str, Callable[[RecordState | None], tuple[str, Mapping[str, object]]]]:
        """Validate what can be checked up front; the returned edit checks against the current state.

        ``Validated`` fields (runtime.people: the person kind's ``validate`` output, and a create's
        id its key) are not validated or keyed a second time; the edit's checks still run."""
        checked = type(fields) is Validated and kind == "person"
        if op not in OPS:
            raise ValidationError("op", f"{op!r} is not one of {', '.join(OPS)}", rule=f"must be one of {', '.join(OPS)}")
        if kind == request.KIND and op in ("create", "update", "delete"):
            return self._prepare_request(op, record_id, fields)
        k = get_kind(kind)
        key = record_key(kind)
        fields = {f: v for f, v in fields.items() if f != key}
        today = self.today()
        if op == "create":
            if checked:
                clean = fields
            else:
                clean = k.validate(fields, today=today)
                record_id = self.key_of_new_person(record_id, clean) if kind == "person" else record_id or str(uuid.uuid4())
        else:
            if not record_id:
                raise ValidationError(key, "required")
            clean = (fields if checked else k.validate(fields, today=today, partial=True)) if fields else {}
            if op == "update" and not clean:
                raise ValidationError("fields", "update needs at least one field to set")
            if op == "delete" and fields:
                raise ValidationError("fields", "delete takes no fields")
        record_id = check_record_id(key, record_id)

        def edit(current: RecordState | None) -> tuple[str, Mapping[str, object]]:
            if op == "create":
                if current is not None:
                    raise LocalError(f"{kind} {record_id} already exists")
                self._check_involved(k, None, clean)
                return op, clean
            if current is None:
                raise NotFound(f"no {kind} record {record_id} on {self.replica.identity}")
            if op == "update" and current.deleted:
                raise LocalError(f"{kind} {record_id} is deleted; settle it to restore")
            if op == "settle":
                unknown = set(clean) - set(open_conflicts(current)) - {"_deleted"}
                if unknown:
                    raise ValidationError(sorted(unknown)[0], "is not in conflict; use update")
            if op != "delete":
                # Judged on what it writes: each written field was checked above; here the rules
                # those fields take part in, on the merged record. A field left alone is not judged
                # again (a value stored before a newer rule must not freeze the record), and fields
                # a newer release wrote are kept and passed on, not judged by our rules.
                current_values = {f: v for f, v in current.values().items() if v is not None and f in k.fields}
                if k.check_update is not None:
                    k.check_update(current_values, clean, today=today)
                else:
                    k.validate({**current_values, **clean}, today=today)
            self._check_involved(k, current, clean)
            return op, clean

        return kind, record_id, edit

    def key_of_new_person(self, given: str, clean: Mapping[str, object]) -> str:
        """A new person's key: the HMAC of its valid resident ID, else a random ``r-`` key.

        A given id must be that key (a person with a valid ID has exactly one record
        federation-wide, so a second id for it, a legacy uuid included, is refused)."""
        id_number = valid_id_number(clean.get("id_number"))
        if id_number is None:
            key = given or random_key(uuid.uuid4())
            if is_person_key(key.strip()):
                raise ValidationError("person_id", "a p- key belongs to a person with a valid id_number")
            return key
        if self.person_secret is None:
            raise LocalError(f"{self.replica.identity} has no federation secret ([node].federation_secret): "
                             "it cannot key a person record")
        key = person_key(self.person_secret, id_number)
        if given and given.strip() != key:
            raise ValidationError("person_id", f"{given!r} is not the key of this id_number ({key}): a person with a "
                                               "valid ID is keyed by it; leave person_id empty",
                                  rule="is not the key of the id_number")
        return key

    def _prepare_request(self, op: str, record_id: str, fields: Mapping[str, object]
                         ) -> tuple[str, str, Callable[[RecordState | None], tuple[str, Mapping[str, object]]]]:
        """Requests are sent, answered and closed by their own rules (core.request): the node
        fills in sender, side, dates and state, and checks who may do what."""
        k = get_kind(request.KIND)
        own = Identity.parse(self.replica.identity).province or ""
        today = self.today()
        fields = {f: v for f, v in fields.items() if f != "request_id"}
        if op == "create":
            pid = fields.get("person_id")
            person = self.replica.store.get("person", pid) if isinstance(pid, str) else None
            values = request.new(fields, own=own, person=None if person is None or person.deleted else person.values(),
                                 today=today)
            clean = k.validate(values, today=today)
            record_id = record_id or str(uuid.uuid4())
        elif not record_id:
            raise ValidationError("request_id", "required")
        try:
            uuid.UUID(record_id)
        except ValueError:
            raise ValidationError("request_id", f"{record_id!r} is not a UUID", rule="must be a UUID") from None

        def edit(current: RecordState | None) -> tuple[str, Mapping[str, object]]:
            if op == "create":
                if current is not None:
                    raise LocalError(f"request {record_id} already exists")
                return op, clean
            if current is None or current.deleted:
                raise NotFound(f"no request {record_id} on {self.replica.identity}")
            writes = request.transition(current.values(), op, fields, own, today)
            k.validate({f: v for f, v in {**current.values(), **writes}.items() if v is not None and f in k.fields},
                       today=today)
            return "update", writes

        return request.KIND, record_id, edit

    def _check_involved(self, k: Kind, current: RecordState | None, clean: Mapping[str, object]) -> None:
        """A province writes only records that involve it, before or after the write (as every
        hub and node checks on receipt: a write that fails this would stay here and be quarantined
        everywhere else)."""
        own = Identity.parse(self.replica.identity).province
        before = state_provinces(current) if current is not None else frozenset()
        new = {f: clean[f] for f in k.routing_fields if clean.get(f) is not None}
        involved = before | k.provinces(new)
        if own is not None and own not in involved:
            field = next((f for f in reversed(k.routing_fields) if f in clean), k.routing_fields[-1])
            raise ValidationError(field, f"{self.replica.identity} may only write records that involve province "
                                         f"{own}; this one involves {', '.join(sorted(involved)) or 'none'}")

    def link(self, from_id: str, into: str, operator: str | None) -> RecordState:
        """``person link``: merge the random-key (or legacy uuid) record ``from_id`` into the record
        keyed by ``into`` (an ID number or a ``p-`` key); see Store.link_local."""
        from core.idnumber import check_id_number

        from_id = check_record_id("RANDOM_KEY_ID", from_id)
        if is_person_key(from_id):
            raise ValidationError("RANDOM_KEY_ID", f"{from_id} is already an ID-keyed record; link an r- key "
                                                   "or a legacy uuid into it", rule="is already ID-keyed")
        text = into.strip() if isinstance(into, str) else ""
        id_number: str | None = None
        if is_person_key(text):
            target_id = text
        else:
            if self.person_secret is None:
                raise LocalError(f"{self.replica.identity} has no federation secret ([node].federation_secret)")
            id_number = check_id_number(text, "ID_NUMBER_OR_KEY")
            target_id = person_key(self.person_secret, id_number)
        own = Identity.parse(self.replica.identity).province

        def set_id(merged: RecordState) -> dict[str, object]:
            """Linked by ID number: the record's id_number is that ID (written only if it is not already)."""
            held = {v.value for v in merged.fields.get("id_number", ())}
            return {"id_number": id_number} if id_number is not None and held != {id_number} else {}

        def check(source: RecordState, target: RecordState | None) -> None:
            if target is None and id_number is None:
                raise NotFound(f"ID_NUMBER_OR_KEY: no person {target_id} on {self.replica.identity}; give the ID "
                               "number to link into a record not held here")
            for name, state in (("RANDOM_KEY_ID", source), ("ID_NUMBER_OR_KEY", target)):
                if state is None:
                    continue
                if state.deleted:
                    raise LocalError(f"{name}: person {state.record_id} is deleted; restore it first")
                if own not in state_provinces(state):
                    raise ValidationError(name, f"{self.replica.identity} may only link records that involve province "
                                                f"{own}; {state.record_id} involves "
                                                f"{', '.join(sorted(state_provinces(state))) or 'none'}")

        self.check_signing_key()
        alias = self.replica.store.link_local("person", from_id, target_id, check=check, operator=operator,
                                              now_ms=now_ms(), seal=self.signer.seal_batch, values=set_id)
        metrics.LOCAL_WRITES.labels(alias.op).inc()
        return alias.state

    def decide_claim(self, claim_id: int, accept: bool, operator: str | None) -> dict[str, object]:
        """Accept (merge, one signed change that then reaches the claimer) or refuse a claim held
        here (core.claims). Only the record's household province decides."""
        if claim_id <= 0:
            raise ValidationError("claim_id", "must be a positive claim number (yipanqi claims list)")
        own = Identity.parse(self.replica.identity).province
        found = [c for c in self.replica.store.list_claims() if c.claim_id == claim_id]
        if not found:
            raise NotFound(f"no claim {claim_id} on {self.replica.identity}")
        claim = found[0]
        record = self.replica.store.require(claim.kind, claim.record_id)
        household = record.values().get("household_province")
        if household != own:
            raise ValidationError("claim_id", f"claim {claim_id} is decided by the household province "
                                              f"({household}), not {own}")
        if accept:
            self.check_signing_key()
            change = self.replica.store.accept_claim(claim_id, operator=operator, now_ms=now_ms(),
                                                  seal=self.signer.seal_batch)
            metrics.LOCAL_WRITES.labels(change.op).inc()
        else:
            self.check_signing_key()
            self.replica.store.refuse_claim(claim_id, operator=operator, now_ms=now_ms(), seal=self.signer.seal_batch)
        return next(c.to_json() for c in self.replica.store.list_claims() if c.claim_id == claim_id)

    def get(self, kind: str, record_id: str) -> RecordState:
        get_kind(kind)
        return self.replica.store.require(kind, record_id)


class _Refusal(Exception):
    """Not a SyncError, so write_local_batch rolls the whole batch back; carries the real one."""

    def __init__(self, error: SyncError) -> None:
        super().__init__(str(error))
        self.error = error


def _strict(edit: Edit) -> Edit:
    def run(current: RecordState | None) -> tuple[str, Mapping[str, object]]:
        try:
            return edit(current)
        except SyncError as err:
            raise _Refusal(err) from None
    return run
