from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Seal(_message.Message):
    __slots__ = ("key_id", "signature", "index", "size", "proof")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    signature: bytes
    index: int
    size: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., index: _Optional[int] = ..., size: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class SignedChange(_message.Message):
    __slots__ = ("body", "seal", "openings", "relayed")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    OPENINGS_FIELD_NUMBER: _ClassVar[int]
    RELAYED_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    seal: Seal
    openings: bytes
    relayed: _containers.RepeatedCompositeFieldContainer[SignedChange]
    def __init__(self, body: _Optional[bytes] = ..., seal: _Optional[_Union[Seal, _Mapping]] = ..., openings: _Optional[bytes] = ..., relayed: _Optional[_Iterable[_Union[SignedChange, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol", "software", "identity")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    protocol: int
    software: str
    identity: str
    def __init__(self, protocol: _Optional[int] = ..., software: _Optional[str] = ..., identity: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("cursor", "certificates", "changes", "caught_up")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    certificates: _containers.RepeatedScalarFieldContainer[bytes]
    changes: _containers.RepeatedCompositeFieldContainer[SignedChange]
    caught_up: bool
    def __init__(self, cursor: _Optional[int] = ..., certificates: _Optional[_Iterable[bytes]] = ..., changes: _Optional[_Iterable[_Union[SignedChange, _Mapping]]] = ..., caught_up: _Optional[bool] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("cursor", "accepted", "duplicates", "quarantined", "quarantined_seqs", "quarantine_reason")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_SEQS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_REASON_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    accepted: int
    duplicates: int
    quarantined: int
    quarantined_seqs: _containers.RepeatedScalarFieldContainer[int]
    quarantine_reason: str
    def __init__(self, cursor: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., quarantined: _Optional[int] = ..., quarantined_seqs: _Optional[_Iterable[int]] = ..., quarantine_reason: _Optional[str] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ("cursor", "max_batch", "window", "include_own")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OWN_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    max_batch: int
    window: int
    include_own: bool
    def __init__(self, cursor: _Optional[int] = ..., max_batch: _Optional[int] = ..., window: _Optional[int] = ..., include_own: _Optional[bool] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("body", "key_id", "signature", "certificate", "origin")
    BODY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    key_id: str
    signature: bytes
    certificate: bytes
    origin: str
    def __init__(self, body: _Optional[bytes] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., certificate: _Optional[bytes] = ..., origin: _Optional[str] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("hello", "batch", "report", "receipt")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    report: Report
    receipt: Receipt
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., report: _Optional[_Union[Report, _Mapping]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("subscribe", "ack")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    subscribe: Subscribe
    ack: Ack
    def __init__(self, subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("hello", "batch", "receipt")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    receipt: Receipt
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("ids", "kind", "record_id")
    IDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    record_id: str
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ..., record_id: _Optional[str] = ...) -> None: ...
