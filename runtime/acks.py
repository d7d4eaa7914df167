"""Peers' acknowledgements, noted at once and written to the store in batches.

How this works. A peer acknowledges every batch on every stream: how far it has durably taken
what we sent (a cursor such as ``out:province-44`` on a hub, ``push`` on a node). One fsync'd
commit per ack would hold the store's write lock as long as the batches themselves, so an
``AckBook`` keeps the latest value per cursor in memory (``note``) and has the store write them:

  * in the transaction of the next received batch (``Replica.ingest_batch`` passes
    ``riding()`` to ``Store.ingest``), or
  * by a background flush every ``flush_s`` seconds (``Store.set_cursors``), a thread started
    with the first note.

A noted value is forgotten only after a commit that carried it succeeded, and only if no newer
one came meanwhile: a failed batch or an outage of the store loses none (the flush tries again).
Losing the latest few to a crash only means resending batches the peer already holds, which it
counts as duplicates. Readers in this process (``cursor``, ``cursors``) see a noted value at once.

Every write of noted values holds ``_writing`` from the moment it takes them until it has
forgotten them, so a value set outright (``set``) is never overwritten by an older noted one that
a concurrent flush had already taken.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from store.store import Store

__all__ = ["ACK_FLUSH_S", "AckBook"]

ACK_FLUSH_S = 0.25  # how long a noted ack may wait for a transaction to ride along with

Noted = dict[str, tuple[int, int]]  # cursor name -> (value, noted at ms)


class AckBook:
    def __init__(self, store: Store, *, flush_s: float = ACK_FLUSH_S) -> None:
        if flush_s <= 0:
            raise ValueError(f"flush_s: must be above 0 seconds, got {flush_s}")
        self.store = store
        self.flush_s = flush_s
        self._noted: Noted = {}
        self._lock = threading.Lock()  # guards _noted only: never held across I/O
        self._writing = threading.Lock()  # held from taking noted values until they are forgotten
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()

    def note(self, name: str, value: int, now_ms: int) -> None:
        """A peer acknowledged ``value`` on cursor ``name``: seen by ``cursor`` at once, written
        within ``flush_s``. Never blocks on the store."""
        with self._lock:
            self._noted[name] = (value, now_ms)
            if self._flusher is None and not self._closed.is_set():
                self._flusher = threading.Thread(target=self._flush_loop, name="ack-flush", daemon=True)
                self._flusher.start()

    def set(self, name: str, value: int, now_ms: int) -> None:
        """Write ``value`` to cursor ``name`` now (its own transaction), superseding a noted ack.
        Raises what ``Store.set_cursors`` raises; the noted ack is dropped either way."""
        with self._writing:
            with self._lock:
                self._noted.pop(name, None)
            self.store.set_cursors({name: (value, now_ms)})

    def cursor(self, name: str) -> int:
        """The noted value of ``name``, else the stored one (0 if none)."""
        with self._lock:
            if name in self._noted:
                return self._noted[name][0]
        return self.store.cursor(name)

    def cursors(self, prefix: str = "") -> dict[str, tuple[int, int]]:
        """``Store.cursors(prefix)`` with the noted values over the stored ones."""
        out = self.store.cursors(prefix)
        with self._lock:
            out.update((name, ack) for name, ack in self._noted.items() if name.startswith(prefix))
        return out

    @contextmanager
    def riding(self) -> Iterator[Noted]:
        """The noted values, for a transaction to write along with its own work: forgotten once
        the ``with`` block ends without an exception (the transaction committed), kept otherwise."""
        with self._writing:
            with self._lock:
                taken = dict(self._noted)
            yield taken
            self._forget(taken)

    def flush(self) -> None:
        """Write the noted values now, in one transaction. Raises what ``Store.set_cursors``
        raises (``StoreUnavailable``); the values then stay noted."""
        with self._lock:
            if not self._noted:
                return
        with self.riding() as taken:
            if taken:
                self.store.set_cursors(taken)

    def close(self) -> None:
        """Stop the flush thread and write what is noted (the store stays open)."""
        self._closed.set()
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=max(1.0, 4 * self.flush_s))
        self.flush()

    def _forget(self, written: Noted) -> None:
        with self._lock:
            for name, ack in written.items():
                if self._noted.get(name) == ack:
                    del self._noted[name]

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.flush_s):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - an outage is noted in store.health; the acks wait for the next try
                pass
