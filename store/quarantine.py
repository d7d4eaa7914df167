"""Changes refused on receipt, kept with the reason and the bytes exactly as received.

Every text here may come straight from a peer's bytes (a forged origin, a reason
quoting it), so it is made storable on every backend first: otherwise one bad
change would abort the whole batch it arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select

from core.change import Envelope
from store.schema import quarantine


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    received_ms: int
    peer: str
    origin: str | None
    seq: int | None
    kind: str | None
    record_id: str | None
    reason: str


def _storable(text: str | None, max_len: int) -> str | None:
    """Peer-supplied text made storable as-is on SQLite and PostgreSQL: PostgreSQL text
    cannot hold NUL, neither driver can encode lone surrogates, and PostgreSQL refuses
    strings longer than the column (SQLite would keep them)."""
    if text is None:
        return None
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text[:max_len]


def _width(column: str) -> int:
    return quarantine.c[column].type.length


def add(conn, envelope: Envelope, reason: str, *, peer: str, now_ms: int, origin: str | None = None,  # type: ignore[no-untyped-def]
        seq: int | None = None, kind: str | None = None, record_id: str | None = None) -> None:
    conn.execute(insert(quarantine).values(
        received_ms=now_ms, peer=_storable(peer, _width("peer")), origin=_storable(origin, _width("origin")),
        seq=seq, kind=_storable(kind, _width("kind")), record_id=_storable(record_id, _width("record_id")),
        reason=_storable(reason, 2000), body=envelope.body,
        key_id=_storable(envelope.seal.key_id, _width("key_id")), signature=envelope.seal.signature,
    ))


def entries(conn, limit: int) -> list[QuarantineEntry]:  # type: ignore[no-untyped-def]
    q = select(quarantine.c.id, quarantine.c.received_ms, quarantine.c.peer, quarantine.c.origin,
               quarantine.c.seq, quarantine.c.kind, quarantine.c.record_id, quarantine.c.reason)
    return [QuarantineEntry(*r) for r in conn.execute(q.order_by(quarantine.c.id.desc()).limit(limit))]


def body(conn, entry_id: int) -> bytes | None:  # type: ignore[no-untyped-def]
    raw = conn.execute(select(quarantine.c.body).where(quarantine.c.id == entry_id)).scalar()
    return None if raw is None else bytes(raw)


def by_origin(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    q = select(quarantine.c.origin, func.count()).where(quarantine.c.origin.is_not(None)).group_by(quarantine.c.origin)
    return {origin: int(n) for origin, n in conn.execute(q)}


def count(conn) -> int:  # type: ignore[no-untyped-def]
    return int(conn.execute(select(func.count()).select_from(quarantine)).scalar() or 0)
