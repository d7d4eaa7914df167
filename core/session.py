"""Windowed sending and receiving over one stream, as pure objects.

How this works. Both streams that carry changes (a node or regional hub pushing
to its hub: runtime.link; a hub serving a subscriber: hub.federation ``Pull``)
work the same way. The sender reads its log after a cursor and sends batches,
each named by the cursor it reaches; the receiver stores a batch and its cursor
in one transaction, then acknowledges that cursor. At most ``window`` batches
(and, when ``max_bytes`` is set, about that many bytes of bodies) are in flight:
sent and not yet acknowledged.

``Sender`` is that bookkeeping and nothing else: where the next read starts
(``position``), what is in flight, what an ack releases, whether there is room
for another batch. It does no I/O, reads no clock and takes no lock: its caller
reads the log, sends, persists acks and guards it with its own lock when two
threads share it (one sends, one reads acks).

The stream is ordered and reliable while it lasts (gRPC over HTTP/2), so an ack
releases every batch up to the cursor it names. An ack that names no batch in
flight (a duplicate, a stale one, or a cursor beyond anything sent) releases
nothing: the acknowledged cursor never passes what was sent, so a hostile peer
cannot make us skip changes. When the stream breaks, whatever was in flight is
lost with it: the next session starts a new ``Sender`` at the durable
acknowledged cursor and sends it all again (idempotent apply makes the
duplicates harmless).

``Receiver`` is the other end: where a subscription starts, which batches take
a window slot and need an ack (a ``caught_up`` marker does not), and the cursor
to acknowledge once a batch is stored.
"""

from __future__ import annotations

from collections import deque


class Sender:
    """One stream's window. ``start`` is the cursor the peer has acknowledged durably."""

    def __init__(self, start: int, window: int, *, max_bytes: int | None = None, min_room: int = 0) -> None:
        if window < 1:
            raise ValueError(f"window: must be at least 1, got {window}")
        self.window = window
        self.max_bytes = max_bytes  # bound on the bodies in flight (a hub serving a Pull), None for none
        self.min_room = min_room  # with max_bytes: read a batch only once this much of it is free
        self.position = start  # where the next read starts
        self.sent = start  # cursor of the last batch sent (or stretch skipped while idle)
        self.acked = start  # cursor of the last batch acknowledged
        self._flight: deque[tuple[int, int]] = deque()  # (cursor, body bytes) sent, not acknowledged; oldest first
        self._bytes = 0

    # -- what may be sent --------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Batches sent and not acknowledged."""
        return len(self._flight)

    @property
    def bytes_in_flight(self) -> int:
        return self._bytes

    @property
    def idle(self) -> bool:
        """Nothing in flight: the peer holds everything sent so far."""
        return not self._flight

    def has_room(self) -> bool:
        """Whether another batch may be sent now."""
        if len(self._flight) >= self.window:
            return False
        return self.max_bytes is None or self._bytes <= self.max_bytes - self.min_room

    def budget(self, batch_bytes: int) -> int:
        """Bytes of bodies the next batch may carry: ``batch_bytes``, less when the byte window is
        nearly full (but a batch alone on the stream may always be ``batch_bytes``)."""
        if self.max_bytes is None or not self._flight:
            return batch_bytes
        return max(0, min(batch_bytes, self.max_bytes - self._bytes))

    # -- what happened -------------------------------------------------------------
    def send(self, cursor: int, size: int = 0) -> None:
        """A batch reaching ``cursor`` (``size`` bytes of bodies) was sent; the next read starts there."""
        if not self.has_room():
            raise ValueError("send: the window is full")
        if cursor <= self.position:
            raise ValueError(f"send: cursor {cursor} does not move past {self.position}")
        self._flight.append((cursor, size))
        self._bytes += size
        self.sent = self.position = cursor

    def skip(self, cursor: int) -> bool:
        """A stretch up to ``cursor`` held nothing for this peer: read on from its end. True when
        nothing is in flight, so the peer is owed nothing up to ``cursor`` and its acknowledged
        cursor may move there (status then counts no backlog behind what it will never be sent)."""
        if cursor < self.position:
            raise ValueError(f"skip: cursor {cursor} is behind {self.position}")
        self.position = cursor
        if self._flight:
            return False
        self.sent = self.acked = cursor
        return True

    def ack(self, cursor: int) -> int | None:
        """The peer acknowledged ``cursor``: release every batch in flight up to it. Returns the new
        acknowledged cursor (always a cursor that was sent), or None when the ack released nothing."""
        if not self._flight or cursor < self._flight[0][0] or cursor > self.sent:
            return None
        while self._flight and self._flight[0][0] <= cursor:
            done, size = self._flight.popleft()
            self._bytes -= size
            self.acked = done
        return self.acked


class Receiver:
    """The receiving end of one stream: subscribe at the durable cursor, ack what was stored."""

    def __init__(self, start: int, window: int) -> None:
        if window < 1:
            raise ValueError(f"window: must be at least 1, got {window}")
        self.cursor = start  # the last cursor stored (in the same transaction as its batch)
        self.window = window
        self.taken = 0  # batches stored this session

    def subscribe(self) -> tuple[int, int]:
        """(cursor, window) to ask the sender for."""
        return self.cursor, self.window

    @staticmethod
    def takes(caught_up: bool) -> bool:
        """Whether a batch is to be stored and acknowledged: a ``caught_up`` marker takes no window
        slot and needs no ack."""
        return not caught_up

    def stored(self, cursor: int) -> int:
        """A batch reaching ``cursor`` was stored with its cursor: the cursor to acknowledge."""
        self.cursor = cursor
        self.taken += 1
        return cursor
