"""How hubs carry receipts back to their origins (issue 17): latest per stream, forwarded once.

How this works. A destination sends its signed cumulative receipts up its Push stream; each
names the origin it is about (unsigned: only the origin can check it, and does). A hub keeps the
latest receipt per (origin, signing key): receipts are cumulative, so a newer one replaces an
older one and nothing is lost by forgetting it. Each consumer (a node's or regional hub's Pull
stream, the stream up to the national hub) takes what arrived since it last took, among the
receipts it should carry (``wants``, by origin). Memory is bounded: at most ``MAX_STREAMS``
streams are kept, the oldest forgotten first (a destination re-sends each at least every third
of its alert delay). A hub cannot forge a receipt (it is signed by the destination); it can
drop one, which the origin sees as changes left unreceipted (``status`` ``receipts``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

from yipanqi.v2 import federation_pb2 as pb

MAX_STREAMS = 20_000
MAX_RECEIPT_BYTES = 65_536 + 16_384  # a receipt (runtime.receipts.MAX_RECEIPT) and a certificate


class ReceiptRouter:
    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self._latest: OrderedDict[tuple[str, str], tuple[int, pb.Receipt]] = OrderedDict()
        self._taken: dict[str, int] = {}  # consumer -> the last arrival number it took
        self._n = 0
        self._max = max_streams
        self._lock = threading.Lock()

    def put(self, receipt: pb.Receipt) -> bool:
        """Keep a receipt to forward; False (dropped) if it is too big or names no origin."""
        if not receipt.origin or len(receipt.origin) > 64 or receipt.ByteSize() > MAX_RECEIPT_BYTES:
            return False
        with self._lock:
            self._n += 1
            key = (receipt.origin, receipt.key_id)
            self._latest.pop(key, None)
            self._latest[key] = (self._n, receipt)
            while len(self._latest) > self._max:
                self._latest.popitem(last=False)
        return True

    def take(self, consumer: str, wants: Callable[[str], bool]) -> list[pb.Receipt]:
        """What arrived for ``consumer`` (an origin it ``wants``) since it last took."""
        with self._lock:
            since = self._taken.get(consumer, 0)
            self._taken[consumer] = self._n
            return [r for n, r in self._latest.values() if n > since and wants(r.origin)]
