from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RecordRef(_message.Message):
    __slots__ = ("kind", "record_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record_id: str
    def __init__(self, kind: _Optional[str] = ..., record_id: _Optional[str] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("kind", "record_id", "op", "fields_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record_id: str
    op: str
    fields_json: str
    def __init__(self, kind: _Optional[str] = ..., record_id: _Optional[str] = ..., op: _Optional[str] = ..., fields_json: _Optional[str] = ...) -> None: ...

class RecordReply(_message.Message):
    __slots__ = ("kind", "record_id", "json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record_id: str
    json: str
    def __init__(self, kind: _Optional[str] = ..., record_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind", "include_deleted", "conflicted_only")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTED_ONLY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    include_deleted: bool
    conflicted_only: bool
    def __init__(self, kind: _Optional[str] = ..., include_deleted: _Optional[bool] = ..., conflicted_only: _Optional[bool] = ...) -> None: ...

class JsonReply(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
