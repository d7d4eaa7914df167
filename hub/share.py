"""A regional hub's one stream up to the national hub, shared per signing origin.

How this works. A regional hub checks only the size and head of what its provinces push
(runtime.intake) and forwards all of it, in the order it arrived, on the one
Push stream it has to the national hub, which checks the rest. A province's *signed* junk (a
valid signature on content the schema refuses) therefore passes its regional hub. If that
province pushes faster than the national hub can refuse, its backlog grows in the regional
hub's log without bound, and every other province of the region waits behind it: at the
national hub its whole region is starved.

So every origin gets a share of that queue: at most ``SHARE`` of its changes may wait in this
hub's log for the national hub (stored here, not yet acknowledged up there). When an origin
is at its share, its province's next batch is not stored, and its Push stream not read any
further, until the national hub's acks bring it back under. gRPC's flow control then holds
the sender back, and its changes wait in its own store, where they already are durable. An
origin stores one batch at a time, whatever number of streams it opens, so n streams cannot
pass the share n batches over.

Delayed, never dropped. A held change has not been acknowledged to its sender, so the sender
keeps it and sends it when its stream is read again; nothing is lost, and nothing is
acknowledged that is not stored. The cost falls on the busy origin alone: another province's
change waits behind at most ``SHARE`` changes of each origin (plus the one batch let in just
under it), whatever one origin sends, and the national hub refuses one province's junk only as
fast as it takes it. Operators see who is held in ``status`` (``upstream_share``) and in
``yipanqi_upstream_share_waits_total``.

The share counts every change, not only junk: a regional hub cannot tell junk (that is the
point), and an honest bulk import that outruns the national hub is held just the same; it
still moves at the national hub's pace, less a little pipelining.

The numbers. ``SHARE = 1000`` changes is two of node.link's 500-change batches: one batch being
checked up there and one on its way, so an origin that is alone keeps the upstream busy,
while a change of another province waits behind at most 1,000 of a flooding origin's. The
national hub refuses junk at some thousands of changes a second even on a loaded machine, so
that wait stays well under the issue's 2 s. The share applies only while the upstream session
is up (or has been down for less than ``GRACE_S`` = 30 s: a reconnect is not an outage, and must
not let a flood in): with the national hub unreachable nothing moves up anyway, and the
provinces of a region keep exchanging through it as before (that backlog then drains in the
order it came).

Time is never read here: callers pass in the positions and a ``connected`` test.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

SHARE = 1000
WAKE_S = 0.5  # how often a held stream looks again whether its call is still alive
GRACE_S = 30.0  # a stream up that is down for less than this is reconnecting, not out


def upstream_up(hub: str | None, down_since_ms: int | None, now_ms: int) -> bool:
    """Whether the share applies, from runtime.link.LinkState: the stream up is connected, or went
    down less than ``GRACE_S`` ago. A reconnect must not open the gate to whoever floods; a real
    outage (or a hub that has not reached its national hub yet) lets the region exchange freely."""
    return hub is not None or (down_since_ms is not None and now_ms - down_since_ms < GRACE_S * 1000)


class UpstreamShare:
    """Changes per origin that wait in this hub's log for the upstream hub; thread-safe.

    ``connected()`` says whether the upstream session is up (runtime.link.LinkState)."""

    def __init__(self, connected: Callable[[], bool], share: int = SHARE) -> None:
        self.share = share
        self.connected = connected
        self._cond = threading.Condition()
        self._acked = 0  # the highest log position the upstream hub has acknowledged
        self._waiting: dict[str, deque[list[int]]] = {}  # origin -> [[highest position, changes], ...]
        self._storing: set[str] = set()  # origins with a batch being stored now (one stream at a time)
        self.waits: dict[str, int] = {}  # origin -> times a batch of its waited for its turn (status, metrics)

    def appended(self, origin: str, upto: int, count: int) -> None:
        """``count`` changes of ``origin`` were stored at log positions up to ``upto``."""
        with self._cond:
            if count <= 0 or upto <= self._acked:  # already up there (the upstream stream was quicker)
                return
            q = self._waiting.setdefault(origin, deque())
            if q and q[-1][0] >= upto:
                q[-1][1] += count
            else:
                q.append([upto, count])

    def acked(self, position: int) -> None:
        """The upstream hub has everything up to ``position`` (an ack of our Push stream)."""
        with self._cond:
            if position <= self._acked:
                return
            self._acked = position
            for origin in list(self._waiting):
                q = self._waiting[origin]
                while q and q[0][0] <= position:
                    q.popleft()
                if not q:
                    del self._waiting[origin]
            self._cond.notify_all()

    def pending(self, origin: str) -> int:
        with self._cond:
            return self._count(origin)

    def _count(self, origin: str) -> int:  # (the lock is held)
        return sum(n for _, n in self._waiting.get(origin, ()))

    def take_turn(self, origin: str, active: Callable[[], bool]) -> bool | None:
        """Before a batch of ``origin``'s is stored: wait until the origin is under its share (or the
        upstream is down) and no other stream of the same origin is storing one, then hold the
        origin's turn until ``end_turn``; whether it was held back. None if ``active()`` turned false
        first: the call has ended, so store nothing (its sender got no ack and will send it again)."""
        with self._cond:
            held = False
            while origin in self._storing or self._over(origin):
                if not active():
                    return None
                if not held and self._over(origin):  # (waiting only for its own other stream is no hold)
                    held = True
                    self.waits[origin] = self.waits.get(origin, 0) + 1
                self._cond.wait(WAKE_S)
            self._storing.add(origin)
            return held

    def end_turn(self, origin: str) -> None:
        with self._cond:
            self._storing.discard(origin)
            self._cond.notify_all()

    def _over(self, origin: str) -> bool:
        return self._count(origin) >= self.share and self.connected()

    def report(self) -> dict[str, dict[str, int]]:
        """Per origin: changes waiting upstream now, and how often its stream was held."""
        with self._cond:
            origins = sorted(set(self._waiting) | set(self.waits))
            return {o: {"waiting": self._count(o), "held": self.waits.get(o, 0)}
                    for o in origins}
