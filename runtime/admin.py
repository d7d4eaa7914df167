"""The Admin service that operators' CLI talks to, on nodes and hubs.

Translation only: the caller's identity comes from its operator certificate,
which must be scoped to this node's province (``operator-44-*`` on node 44)
or this hub (``operator-pearl-*`` on hub-pearl). Record JSON uses the domain
field names; reports are built by node/status.py and hub/status.py.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

import grpc

from core.errors import PermissionDenied, ValidationError
from core.identity import Identity
from core.certdoc import CertificateRefused
from runtime.certificates import DEFAULT_YEARS, CertificateDesk
from runtime.records import RecordService, described
from runtime.people import write_people
from runtime import assess as assessing
from runtime.clock import today
from runtime.services import ServiceDesk
from runtime.stats import Arrivals, delivery_delays, record_stats
from runtime.transport import PeerGate
from store.store import Store
from yipanqi.v2 import admin_pb2 as pb
from yipanqi.v2 import admin_pb2_grpc as pb_grpc


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, store: Store, scope: str, status: Callable[[], dict], records: RecordService | None,
                 gate: PeerGate, *, certificates: CertificateDesk | None = None,
                 services: ServiceDesk | None = None, arrivals: Arrivals | None = None) -> None:
        self.gate = gate
        self.arrivals = arrivals  # what this process received (runtime.stats), for Stats' "delivery"
        self.certificates = certificates  # None: this process does not handle certificates (tests)
        self.services = services or ServiceDesk(store, records)
        self.store = store
        self.scope = scope  # "44" on a node, "pearl" / "national" on a hub
        self.status = status
        self.records = records  # None on hubs: hubs hold no records of their own to edit

    def _operator(self, context: grpc.ServicerContext) -> str:
        who = self.gate.identity(context)
        ident = Identity.parse(who)
        if ident.role != "operator" or ident.scope != self.scope:
            raise PermissionDenied(f"{who} is not an operator of {self.scope}")
        return who

    def Write(self, request: pb.WriteRequest, context: grpc.ServicerContext) -> pb.RecordReply:
        operator = self._operator(context)
        if self.records is None:
            raise PermissionDenied("hubs do not write records; write at a province node")
        try:
            fields = json.loads(request.fields_json or "{}")
        except json.JSONDecodeError as exc:
            raise ValidationError("json", f"not valid JSON ({exc.msg} at position {exc.pos})") from None
        except (ValueError, RecursionError) as exc:  # an integer over 4300 digits; nesting too deep
            raise ValidationError("json", f"not acceptable JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(fields, dict):
            raise ValidationError("json", "must be a JSON object of field -> value")
        _not_by_hand(request.kind)
        state = self.records.write(request.op, request.kind or "person", request.record_id, fields, operator)
        return pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def Get(self, request: pb.RecordRef, context: grpc.ServicerContext) -> pb.RecordReply:
        self._operator(context)
        state = self.store.require(request.kind or "person", request.record_id)
        return pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def List(self, request: pb.ListRequest, context: grpc.ServicerContext) -> Iterator[pb.RecordPage]:
        self._operator(context)
        page, left = pb.RecordPage(), request.limit or None
        if len(request.after) > 200:
            raise ValidationError("after", "longer than any record id")
        # The first page is small, so the operator sees records at once, whatever the table's size.
        size = FIRST_PAGE
        for state in self.store.iter_records(request.kind or "person", include_deleted=request.include_deleted,
                                             conflicted_only=request.conflicted_only, after=request.after,
                                             page=min(left or 500, 500)):
            page.records.append(pb.RecordReply(kind=state.kind, record_id=state.record_id,
                                               json=_dump(described(state))))
            if left is not None:
                left -= 1
                if left == 0:
                    break
            if len(page.records) >= size:
                yield page
                page, size = pb.RecordPage(), PAGE
        if page.records:
            yield page

    def History(self, request: pb.RecordRef, context: grpc.ServicerContext) -> pb.JsonReply:
        self._operator(context)
        kind = request.kind or "person"
        entries = self.store.history(kind, request.record_id)
        if not entries:
            self.store.require(kind, request.record_id)
        rows = [{"origin": e.origin, "seq": e.seq, "op": e.op, "operator": e.operator, "at_ms": e.at_ms,
                 "received_ms": e.received_ms, "via": e.via} for e in entries]
        return pb.JsonReply(json=_dump(rows))

    def Status(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.JsonReply:
        self._operator(context)
        return pb.JsonReply(json=_dump(self.status()))

    def Claims(self, request: pb.ClaimsRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self._operator(context)
        rows = self.store.list_claims(status=None if request.all else "open")
        return pb.JsonReply(json=_dump([c.to_json() for c in rows]))

    def Link(self, request: pb.LinkRequest, context: grpc.ServicerContext) -> pb.RecordReply:
        operator = self._operator(context)
        if self.records is None:
            raise PermissionDenied("hubs do not write records; link at a province node")
        state = self.records.link(request.from_id, request.into, operator)
        return pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def DecideClaim(self, request: pb.ClaimDecision, context: grpc.ServicerContext) -> pb.JsonReply:
        operator = self._operator(context)
        if self.records is None:
            raise PermissionDenied("hubs do not decide claims; the household province's node does")
        claim = self.records.decide_claim(request.claim_id, request.accept, operator)
        return pb.JsonReply(json=_dump(claim))

    def Quarantine(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.JsonReply:
        self._operator(context)
        rows = [q.__dict__ if hasattr(q, "__dict__") else {f: getattr(q, f) for f in q.__slots__}
                for q in self.store.quarantined()]
        return pb.JsonReply(json=_dump(rows))

    def Import(self, request_iterator: Iterator[pb.ImportChunk], context: grpc.ServicerContext) -> Iterator[pb.ImportResult]:
        operator = self._operator(context)
        if self.records is None:
            raise PermissionDenied("hubs do not write records; import at a province node")
        for msg in request_iterator:
            rows = list(msg.rows)
            for i in range(0, len(rows), IMPORT_BATCH):
                yield pb.ImportReport(results=list(self._import(rows[i:i + IMPORT_BATCH], operator, msg.update)))

    def _import(self, chunk: list[pb.WriteRequest], operator: str, update: bool) -> Iterator[pb.ImportResult]:
        assert self.records is not None
        rows, errors = [], {}
        for i, req in enumerate(chunk):
            try:
                fields = json.loads(req.fields_json or "{}")
                if not isinstance(fields, dict):
                    raise ValueError
            except (ValueError, RecursionError):  # RecursionError: nesting too deep
                errors[i] = "json: must be a JSON object of field -> value"
                fields = {}
            if req.kind in BY_THEIR_OWN_COMMANDS and i not in errors:
                errors[i] = f"kind: {req.kind} records are written by `yipanqi {req.kind} ...`, not imported"
            rows.append((req.op or "create", req.kind or "person", req.record_id, fields))
        good = [i for i in range(len(chunk)) if i not in errors]
        # People held here are matched, not created twice (runtime.people).
        results = dict(zip(good, write_people(self.records, [rows[i] for i in good], operator, update=update)))
        for i, req in enumerate(chunk):
            r = results.get(i)
            if i in errors:
                yield pb.ImportResult(line=req.line, error=errors[i])
            elif r is None or r.error is not None:
                yield pb.ImportResult(line=req.line, error=str(r.error if r is not None else "not written"))
            else:
                yield pb.ImportResult(line=req.line, record_id=r.record_id, outcome=r.outcome,
                                      differing=list(r.differing))

    def Duplicates(self, request: pb.Empty, context: grpc.ServicerContext) -> Iterator[pb.JsonReply]:
        self._reporting(context)
        page: list[dict] = []
        for pair in self.store.duplicates():
            page.append({"person_ids": [pair.first, pair.second], "why": pair.why})
            if len(page) >= PAGE:
                yield pb.JsonReply(json=_dump(page))
                page = []
        if page:
            yield pb.JsonReply(json=_dump(page))

    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self._operator(context)
        if request.by not in ("", "month", "province"):
            raise ValidationError("by", f"{request.by!r} is not one of month, province",
                                  rule="must be one of month, province")
        doc: dict[str, object] = record_stats(self.store, request.by) if self.store.hold_records else {"identity": self.store.owner}
        doc["delivery"] = delivery_delays(self.arrivals)
        return pb.JsonReply(json=_dump(doc))

    def _reporting(self, context: grpc.ServicerContext) -> str | None:
        """Checks the caller; the province a node reports for (None on the national hub)."""
        self._operator(context)
        if not self.store.hold_records:
            raise PermissionDenied(f"{self.store.owner} holds no records; ask the national hub or a province node")
        return self.scope if self.records is not None else None

    def Assess(self, request: pb.PeriodRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        own = self._reporting(context)
        doc = assessing.assessment(self.store, own=own, from_date=request.from_date, to_date=request.to_date,
                                   today=today(), extra=assessing.kind_figures)
        return pb.JsonReply(json=_dump(doc))

    def Flows(self, request: pb.PeriodRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self._reporting(context)
        return pb.JsonReply(json=_dump(assessing.flows(self.store, request.from_date, request.to_date)))

    # -- certificates and services (runtime.certificates, runtime.services) -------------------
    def _desk(self) -> CertificateDesk:
        if self.certificates is None:
            raise PermissionDenied(f"{self.store.owner} does not handle certificates")
        return self.certificates

    def IssueCertificate(self, request: pb.IssueCertificateRequest, context: grpc.ServicerContext) -> pb.CertificateReply:
        operator = self._operator(context)
        cert_no, document = self._desk().issue(request.person_id, request.valid_years or DEFAULT_YEARS, operator)
        return pb.CertificateReply(cert_no=cert_no, document=document)

    def RevokeCertificate(self, request: pb.RevokeCertificateRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        operator = self._operator(context)
        return pb.JsonReply(json=_dump(self._desk().revoke(request.cert_no, request.reason, operator)))

    def CheckCertificate(self, request: pb.CheckCertificateRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        operator = self._operator(context)
        try:
            return pb.JsonReply(json=_dump(self._desk().check(bytes(request.document), operator)))
        except CertificateRefused as err:  # an answer about the document, not a failed call
            return pb.JsonReply(json=_dump({"refused": err.why, "detail": str(err)}))

    def AddService(self, request: pb.AddServiceRequest, context: grpc.ServicerContext) -> pb.RecordReply:
        operator = self._operator(context)
        state = self.services.add(request.person_id, request.type, request.on, request.result or None, operator)
        return pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def ListServices(self, request: pb.RecordRef, context: grpc.ServicerContext) -> pb.JsonReply:
        self._operator(context)
        return pb.JsonReply(json=_dump(self.services.list(request.record_id)))


# Kinds whose writes carry rules beyond their validator (who issues, what a record copies from the
# person): only their own operations write them, never the generic Write or Import.
BY_THEIR_OWN_COMMANDS = ("certificate", "service")


def _not_by_hand(kind: str) -> None:
    if kind in BY_THEIR_OWN_COMMANDS:
        raise ValidationError("kind", f"{kind} records are written by `yipanqi {kind} ...`, not by Write")


IMPORT_BATCH = 500
PAGE = 200
FIRST_PAGE = 50  # records in the first page of a List stream
