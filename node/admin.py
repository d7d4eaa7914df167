"""The Admin service that operators' CLI talks to, on nodes and hubs.

Translation only: the caller's identity comes from its operator certificate,
which must be scoped to this node's province (``operator-44-*`` on node 44)
or this hub (``operator-pearl-*`` on hub-pearl). Record JSON uses the domain
field names; reports are built by node.status.
"""

from __future__ import annotations

import json
from typing import Callable, Iterator

from core.errors import PermissionDenied, ValidationError
from core.identity import Identity
from node.records import RecordService, described
from node.transport import peer_identity
from store.store import Store
from yipanqi.v1 import admin_pb2 as pb
from yipanqi.v1 import admin_pb2_grpc as pb_grpc


def _dump(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


class AdminServicer(pb_grpc.AdminServicer):
    def __init__(self, store: Store, scope: str, status: Callable[[], dict], records: RecordService | None) -> None:
        self.store = store
        self.scope = scope  # "44" on a node, "pearl" / "national" on a hub
        self.status = status
        self.records = records  # None on hubs: hubs hold no records of their own to edit

    def _operator(self, context) -> str:  # type: ignore[no-untyped-def]
        who = peer_identity(context)
        ident = Identity.parse(who)
        if ident.role != "operator" or ident.scope != self.scope:
            raise PermissionDenied(f"{who} is not an operator of {self.scope}")
        return who

    def Write(self, request: pb.WriteRequest, context) -> pb.RecordReply:  # type: ignore[no-untyped-def]
        operator = self._operator(context)
        if self.records is None:
            raise PermissionDenied("hubs do not write records; write at a province node")
        try:
            fields = json.loads(request.fields_json or "{}")
        except json.JSONDecodeError as exc:
            raise ValidationError("json", f"not valid JSON ({exc.msg} at position {exc.pos})") from None
        if not isinstance(fields, dict):
            raise ValidationError("json", "must be a JSON object of field -> value")
        state = self.records.write(request.op, request.kind or "person", request.record_id, fields, operator)
        return pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def Get(self, request: pb.RecordRef, context) -> pb.RecordReply:  # type: ignore[no-untyped-def]
        self._operator(context)
        state = self.store.require(request.kind or "person", request.record_id)
        return pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def List(self, request: pb.ListRequest, context) -> Iterator[pb.RecordReply]:  # type: ignore[no-untyped-def]
        self._operator(context)
        for state in self.store.iter_records(request.kind or "person", include_deleted=request.include_deleted,
                                             conflicted_only=request.conflicted_only):
            yield pb.RecordReply(kind=state.kind, record_id=state.record_id, json=_dump(described(state)))

    def History(self, request: pb.RecordRef, context) -> pb.JsonReply:  # type: ignore[no-untyped-def]
        self._operator(context)
        kind = request.kind or "person"
        entries = self.store.history(kind, request.record_id)
        if not entries:
            self.store.require(kind, request.record_id)
        rows = [{"origin": e.origin, "seq": e.seq, "op": e.op, "operator": e.operator, "at_ms": e.at_ms,
                 "received_ms": e.received_ms, "via": e.via} for e in entries]
        return pb.JsonReply(json=_dump(rows))

    def Status(self, request: pb.Empty, context) -> pb.JsonReply:  # type: ignore[no-untyped-def]
        self._operator(context)
        return pb.JsonReply(json=_dump(self.status()))

    def Quarantine(self, request: pb.Empty, context) -> pb.JsonReply:  # type: ignore[no-untyped-def]
        self._operator(context)
        rows = [q.__dict__ if hasattr(q, "__dict__") else {f: getattr(q, f) for f in q.__slots__}
                for q in self.store.quarantined()]
        return pb.JsonReply(json=_dump(rows))
