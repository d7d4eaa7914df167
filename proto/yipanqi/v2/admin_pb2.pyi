from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordRef(_message.Message):
    __slots__ = ("kind", "record_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record_id: str
    def __init__(self, kind: _Optional[str] = ..., record_id: _Optional[str] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("kind", "record_id", "op", "fields_json", "line")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record_id: str
    op: str
    fields_json: str
    line: int
    def __init__(self, kind: _Optional[str] = ..., record_id: _Optional[str] = ..., op: _Optional[str] = ..., fields_json: _Optional[str] = ..., line: _Optional[int] = ...) -> None: ...

class ImportResult(_message.Message):
    __slots__ = ("line", "record_id", "error", "outcome", "differing")
    LINE_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_FIELD_NUMBER: _ClassVar[int]
    line: int
    record_id: str
    error: str
    outcome: str
    differing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line: _Optional[int] = ..., record_id: _Optional[str] = ..., error: _Optional[str] = ..., outcome: _Optional[str] = ..., differing: _Optional[_Iterable[str]] = ...) -> None: ...

class RecordReply(_message.Message):
    __slots__ = ("kind", "record_id", "json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record_id: str
    json: str
    def __init__(self, kind: _Optional[str] = ..., record_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class RecordPage(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[RecordReply]
    def __init__(self, records: _Optional[_Iterable[_Union[RecordReply, _Mapping]]] = ...) -> None: ...

class ImportChunk(_message.Message):
    __slots__ = ("rows", "update")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[WriteRequest]
    update: bool
    def __init__(self, rows: _Optional[_Iterable[_Union[WriteRequest, _Mapping]]] = ..., update: _Optional[bool] = ...) -> None: ...

class ImportReport(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImportResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ImportResult, _Mapping]]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "include_deleted", "conflicted_only", "after", "limit")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTED_ONLY_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    include_deleted: bool
    conflicted_only: bool
    after: str
    limit: int
    def __init__(self, kind: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., conflicted_only: _Optional[bool] = ..., after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class JsonReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeriodRequest(_message.Message):
    __slots__ = ("from_date", "to_date")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("by",)
    BY_FIELD_NUMBER: _ClassVar[int]
    by: str
    def __init__(self, by: _Optional[str] = ...) -> None: ...

class IssueCertificateRequest(_message.Message):
    __slots__ = ("person_id", "valid_years")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    VALID_YEARS_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    valid_years: int
    def __init__(self, person_id: _Optional[str] = ..., valid_years: _Optional[int] = ...) -> None: ...

class CertificateReply(_message.Message):
    __slots__ = ("cert_no", "document")
    CERT_NO_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    cert_no: str
    document: bytes
    def __init__(self, cert_no: _Optional[str] = ..., document: _Optional[bytes] = ...) -> None: ...

class RevokeCertificateRequest(_message.Message):
    __slots__ = ("cert_no", "reason")
    CERT_NO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    cert_no: str
    reason: str
    def __init__(self, cert_no: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CheckCertificateRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    def __init__(self, document: _Optional[bytes] = ...) -> None: ...

class AddServiceRequest(_message.Message):
    __slots__ = ("person_id", "type", "on", "result")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    type: str
    on: str
    result: str
    def __init__(self, person_id: _Optional[str] = ..., type: _Optional[str] = ..., on: _Optional[str] = ..., result: _Optional[str] = ...) -> None: ...

class ClaimsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ClaimDecision(_message.Message):
    __slots__ = ("claim_id", "accept")
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    claim_id: int
    accept: bool
    def __init__(self, claim_id: _Optional[int] = ..., accept: _Optional[bool] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("from_id", "into")
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    INTO_FIELD_NUMBER: _ClassVar[int]
    from_id: str
    into: str
    def __init__(self, from_id: _Optional[str] = ..., into: _Optional[str] = ...) -> None: ...
