"""What refusing junk may cost a process: log lines, and the sender's share of its time.

How this works. Every refusal is charged to a party (runtime.intake: the signer when the seal
verifies, else the TLS peer). Two small meters per party keep one party's junk from costing
everyone else:

* ``RateLog``: at most ``LINES`` quarantine log lines per party per ``WINDOW_S`` seconds;
  the rest are counted and reported in one line when the window ends ("suppressed N"), so
  400,000 refusals make a few lines, not a 47 MB log.
* ``Pacer``: a token bucket of ``RATE`` refused changes a second (``BURST`` at once) per TLS
  peer, charged only for what that peer itself sent unverified (or what it sent in a batch
  refused whole, by its bytes). A Push stream whose peer is over its budget waits before it
  reads the next batch, so gRPC's flow control holds the sender back while every other
  stream's work goes on. A hub relaying a province's *verified* junk is not slowed (that would
  starve the whole region): those refusals are charged to the signer's capped quarantine
  share, logged under the signer, and cost no more than the checks they already had; the
  province itself is held back at its own regional hub instead (hub.share).

Meters take the clock as an argument; nothing here sleeps.
"""

from __future__ import annotations

import logging
import threading

LINES = 20
WINDOW_S = 60.0
RATE = 2000.0
BURST = 10_000.0
MAX_WAIT_S = 2.0
BYTES_PER_TOKEN = 200  # a batch refused whole costs its bytes, as if of 200-byte changes


class RateLog:
    def __init__(self, logger: logging.Logger, lines: int = LINES, window_s: float = WINDOW_S,
                 what: str = "quarantine lines") -> None:
        self.log = logger
        self.what = what
        self.lines = lines
        self.window_s = window_s
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # party -> [window start, lines logged, suppressed]
        self._suppressing: set[str] = set()  # parties whose window has suppressed lines to report

    def warning(self, party: str, now: float, msg: str, *args: object) -> None:
        """Log ``msg % args`` unless ``party`` has had its lines for this window."""
        with self._lock:
            w = self._windows.get(party)
            if w is None or now - w[0] >= self.window_s:
                self._suppressing.discard(party)
                if w is not None and w[2]:
                    self.log.warning("suppressed %d more %s for %s in the last %.0f s",
                                     int(w[2]), self.what, party, now - w[0])
                if len(self._windows) > 1024:
                    self._windows.clear()
                w = self._windows[party] = [now, 0, 0]
            if w[1] >= self.lines:
                w[2] += 1
                self._suppressing.add(party)
                return
            w[1] += 1
        self.log.warning(msg, *args)
        if w[1] == self.lines:
            self.log.warning("%s: %d %s in %.0f s; further ones are counted, not logged, until the "
                             "window ends", party, self.lines, self.what, self.window_s)


    def flush(self, now: float) -> None:
        """Report the suppressed count of every window that has ended, even if its party went quiet."""
        if not self._suppressing:
            return
        with self._lock:
            due = [(p, self._windows.pop(p)) for p in list(self._suppressing)
                   if p in self._windows and now - self._windows[p][0] >= self.window_s]
            self._suppressing.difference_update(p for p, _ in due)
        for party, w in due:
            self.log.warning("suppressed %d more %s for %s in the last %.0f s", int(w[2]), self.what, party,
                             now - w[0])


class Pacer:
    def __init__(self, rate: float = RATE, burst: float = BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # peer -> [tokens, at]

    def charge(self, peer: str, cost: float, now: float) -> float:
        """Charge ``cost`` to ``peer``; how long (s) its stream should wait before reading more."""
        with self._lock:
            b = self._buckets.get(peer)
            if b is None:
                b = self._buckets[peer] = [self.burst, now]
            b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate) - cost
            b[1] = now
            return 0.0 if b[0] >= 0 else min(MAX_WAIT_S, -b[0] / self.rate)
