"""Statistics for monitoring (统计监测) over the records a replica holds.

On a node these are the migrants that involve its province; on the national
hub, every cross-province migrant in the country. The figures are exact: SQL
groups over the records' projection columns (household, residence, move date),
so they cost one query whatever the number of records.

Delivery delays are kept in memory (``Arrivals``), not in the store: the latest
changes this process received, from each ``IngestResult.arrived``.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from statistics import quantiles
from typing import Iterable

from store.store import Store


def record_stats(store: Store, by: str = "") -> dict[str, object]:
    residence: Counter[str] = Counter()
    household: Counter[str] = Counter()
    inflow: Counter[str] = Counter()
    outflow: Counter[str] = Counter()
    months: Counter[str] = Counter()
    total = 0
    for h, r, month, n in store.flow_counts("person"):
        total += n
        if r:
            residence[r] += n
        if h:
            household[h] += n
        if h and r and h != r:
            inflow[r] += n
            outflow[h] += n
        if month:
            months[month] += n
    out: dict[str, object] = {"identity": store.owner, "migrants": total,
                              "cross_province": sum(inflow.values())}
    if by in ("", "province"):
        codes = sorted(set(residence) | set(household))
        out["provinces"] = {c: {"residents": residence[c], "household": household[c], "inflow": inflow[c],
                                "outflow": outflow[c]} for c in codes}
    if by in ("", "month"):
        out["moves_by_month"] = dict(sorted(months.items()))
    return out


class Arrivals:
    """(origin, written ms, applied ms) of the latest changes received since this process started."""

    def __init__(self, keep: int = 10_000) -> None:
        self._recent: deque[tuple[str, int, int]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, arrived: Iterable[tuple[str, int]], applied_ms: int) -> None:
        """``arrived``: (origin, written ms) of changes applied at ``applied_ms`` (IngestResult.arrived)."""
        with self._lock:
            self._recent.extend((origin, at_ms, applied_ms) for origin, at_ms in arrived)

    def recent(self, last: int) -> list[tuple[str, int, int]]:
        """The last ``last`` arrivals, oldest first."""
        with self._lock:
            return list(self._recent)[-last:]


def delivery_delays(arrivals: Arrivals | None, *, last: int = 10_000) -> dict[str, dict[str, float | int]]:
    """Per origin: how long its changes took from being written to arriving here (seconds);
    empty for a process that receives nothing (``arrivals`` None)."""
    delays: dict[str, list[int]] = {}
    for origin, at_ms, received_ms in arrivals.recent(last) if arrivals is not None else ():
        delays.setdefault(origin, []).append(max(0, received_ms - at_ms))
    out = {}
    for origin, ds in sorted(delays.items()):
        ds.sort()
        if len(ds) >= 2:
            qs = quantiles(ds, n=100, method="inclusive")
            p50, p95 = qs[49], qs[94]
        else:
            p50 = p95 = ds[0]
        out[origin] = {"changes": len(ds), "p50_s": round(p50 / 1000, 3), "p95_s": round(p95 / 1000, 3)}
    return out
