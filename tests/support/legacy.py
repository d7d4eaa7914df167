"""v1 history in a store, as a v1 node wrote it, for the v2 upgrade's tests (core.baseline).

The v1 write path is being replaced by deltas (docs/design/v2-wire.md 8.2), yet the upgrade
must keep being tested on stores that hold v1 changes. So this writes them as v1 did, from the
v1 core (core.apply): a signed whole-state change appended to the log and the record merged,
in one transaction, at the author (``write``) and at each replica it reached (``deliver``).
"""

from __future__ import annotations

from core.apply import apply, local_write
from core.change import Change, Envelope
from core.hlc import Timestamp
from store import changelog, records
from store.store import Store
from tests.support.pki import PKI


def write(store: Store, pki: PKI, record_id: str, values: dict[str, object], *, now_ms: int, op: str | None = None,
          kind: str = "person") -> tuple[Change, Envelope]:
    """The store's owner writes ``values`` as one v1 change (create if new, else update, or ``op``)."""
    with store.engine.begin() as conn:
        current = records.load(conn, kind, record_id)
        change = local_write(current, kind=kind, record_id=record_id, values=values, node=store.owner,
                             seq=changelog.last_seq(conn, store.owner) + 1, at=Timestamp(now_ms, 0, store.owner),
                             op=op or ("create" if current is None else "update"), operator=None)
        env = _logged(conn, store, pki, change, "local", now_ms)
        store._save(conn, [(change.state, current)], now_ms)
    return change, env


def deliver(store: Store, change: Change, env: Envelope, *, now_ms: int, via: str = "hub-pearl") -> None:
    """What v1 intake did with a change that reached ``store``: logged, and merged into the record."""
    with store.engine.begin() as conn:
        current = records.load(conn, change.kind, change.record_id)
        changelog.append(conn, [(change, env)], via=via, now_ms=now_ms, index_routes=store.index_routes)
        store._save(conn, [(apply(current, change).state, current)], now_ms)


def _logged(conn, store: Store, pki: PKI, change: Change, via: str, now_ms: int) -> Envelope:  # type: ignore[no-untyped-def]
    body = change.to_body()
    (seal,) = pki.sealer(change.origin)([body])
    env = Envelope(body, seal)
    changelog.append(conn, [(change, env)], via=via, now_ms=now_ms, index_routes=store.index_routes)
    return env
