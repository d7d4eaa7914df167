"""Changes refused on receipt, kept with the reason and the bytes exactly as received.

Every text here may come straight from a peer's bytes (a forged origin, a reason
quoting it), so it is made storable on every backend first: otherwise one bad
change would abort the whole batch it arrived in.

Caps. Every refusal is charged to a party (runtime.intake says who: the signer when the seal
verifies, else the TLS peer). A party holds at most ``MAX_ROWS`` rows and ``MAX_BYTES`` of
bodies here; past either, its refusals are counted (``dropped``) and not kept, so junk from
one party can neither fill the disk nor push out what another party's refusals left. The
running totals are counters rows (store.counters), written in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Sequence

from sqlalchemy import func, insert, select
from sqlalchemy import Connection

from store import counters
from store.schema import quarantine

MAX_ROWS = 1000
MAX_BYTES = 8 * 1024 * 1024
_ROWS, _BYTES, _DROPPED = "quarantine:rows:", "quarantine:bytes:", "quarantine:dropped:"


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
    charged: str | None = None


def _storable(text: str | None, max_len: int) -> str | None:
    """Peer-supplied text made storable as-is on SQLite and PostgreSQL: PostgreSQL text
    cannot hold NUL, neither driver can encode lone surrogates, and PostgreSQL refuses
    strings longer than the column (SQLite would keep them)."""
    if text is None:
        return None
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text[:max_len]


def _width(column: str) -> int:
    return quarantine.c[column].type.length  # type: ignore[attr-defined]  # a String column: its TypeEngine has one


def add_capped(conn: Connection, refused: Sequence, *, peer: str, now_ms: int) -> tuple[int, int]:
    """Keep each refusal (a store.Refused) within its charged party's cap; count the rest.

    Returns (changes refused, of them dropped over a cap). A refusal standing for a whole batch
    (``count`` > 1) takes one row."""
    parties = {_storable(r.charged or peer, _width("charged")) or "" for r in refused}
    held = {p: [0, 0, 0] for p in parties}
    for prefix, slot in ((_ROWS, 0), (_BYTES, 1), (_DROPPED, 2)):
        for name, (value, _at) in counters.read(conn, prefix).items():
            party = name[len(prefix):]
            if party in held:
                held[party][slot] = value
    before = {p: list(v) for p, v in held.items()}
    rows, total, dropped = [], 0, 0
    for r in refused:
        party = _storable(r.charged or peer, _width("charged")) or ""
        h = held[party]
        total += r.count
        size = len(r.envelope.body)
        if h[0] + 1 > MAX_ROWS or h[1] + size > MAX_BYTES:
            h[2] += r.count
            dropped += r.count
            continue
        h[0] += 1
        h[1] += size
        rows.append(dict(
            received_ms=now_ms, peer=_storable(peer, _width("peer")), origin=_storable(r.origin, _width("origin")),
            seq=r.seq, kind=_storable(r.kind, _width("kind")), record_id=_storable(r.record_id, _width("record_id")),
            reason=_storable(r.reason, 2000), body=r.envelope.body,
            key_id=_storable(r.envelope.seal.key_id, _width("key_id")), signature=r.envelope.seal.signature,
            charged=party))
    if rows:
        conn.execute(insert(quarantine), rows)
    for party, h in held.items():
        for prefix, slot in ((_ROWS, 0), (_BYTES, 1), (_DROPPED, 2)):
            if h[slot] != before[party][slot]:
                counters.put(conn, prefix + party, h[slot], now_ms)
    return total, dropped


def shares(conn: Connection) -> dict[str, dict[str, int]]:
    """Per charged party: {"rows", "bytes", "dropped"}."""
    out: dict[str, dict[str, int]] = {}
    for prefix, key in ((_ROWS, "rows"), (_BYTES, "bytes"), (_DROPPED, "dropped")):
        for name, (value, _at) in counters.read(conn, prefix).items():
            out.setdefault(name[len(prefix):], {"rows": 0, "bytes": 0, "dropped": 0})[key] = value
    return dict(sorted(out.items()))


def entries(conn: Connection, limit: int) -> list[QuarantineEntry]:
    q = select(quarantine.c.id, quarantine.c.received_ms, quarantine.c.peer, quarantine.c.origin,
               quarantine.c.seq, quarantine.c.kind, quarantine.c.record_id, quarantine.c.reason,
               quarantine.c.charged)
    return [QuarantineEntry(*r) for r in conn.execute(q.order_by(quarantine.c.id.desc()).limit(limit))]


def body(conn: Connection, entry_id: int) -> bytes | None:
    raw = conn.execute(select(quarantine.c.body).where(quarantine.c.id == entry_id)).scalar()
    return None if raw is None else bytes(raw)


def by_origin(conn: Connection) -> dict[str, int]:
    q = select(quarantine.c.origin, func.count()).where(quarantine.c.origin.is_not(None)).group_by(quarantine.c.origin)
    return {origin: int(n) for origin, n in conn.execute(q)}


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(quarantine)).scalar() or 0)
