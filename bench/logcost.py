"""CPU per change of logging a received batch: with 0007's ``ix_log_delay``, and with 0008 (no
index) without and with the delay counters (store.delays), in one process on SQLite files.

    .venv/bin/python -m bench.logcost [RUNS]

Each run logs 60 batches of 500 changes (3 origins, delays ~ exponential, mean 2 s) the way
``Store.ingest`` does (one driver-level executemany of log rows, then ``delays.add``, in one
transaction) and reports the process CPU time per change. ``bench.hops`` measures whole hops;
this isolates the part migration 0008 changed, which is small beside a hop's noise.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time

from store import changelog, delays
from store.db import insert_rows, migrate, open_engine
from store.schema import log

def run(rev: str, counters: bool, batches: int = 60, size: int = 500) -> float:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        e = open_engine(f"sqlite:///{d}/x.db")
        migrate(e, rev)
        now = 1_780_000_000_000
        lsn = 0
        total = 0.0
        for _ in range(batches):
            rows = []
            items = []
            for i in range(size):
                lsn += 1
                at = now - int(rng.expovariate(1 / 2000))
                origin = f"province-{rng.choice(['11', '12', '13'])}"
                rows.append((lsn, origin, lsn, "person", f"r{lsn}", "update", None, at, lsn.to_bytes(32, "big"),
                             b"x" * 400, "k", b"\0" * 64, i, size, b"\0" * 288, ",11,44,", True, "hub-bohai", now))
                items.append((origin, at))
            t = time.process_time()
            with e.begin() as conn:
                insert_rows(conn, log, changelog._LOG_COLUMNS, rows)
                if counters:
                    delays.add(conn, items, now)
            total += time.process_time() - t
            now += 1000
        e.dispose()
    return total / (batches * size) * 1e6


def main() -> None:
    res: dict[str, list[float]] = {"0007 log insert (ix_log_delay)": [],
                                   "0008 log insert, no counters (regional hub)": [],
                                   "0008 log insert + counters (node, national)": []}
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):  # alternated, so load drifts hit all three
        res["0007 log insert (ix_log_delay)"].append(run("0007_log_received", False))
        res["0008 log insert, no counters (regional hub)"].append(run("head", False))
        res["0008 log insert + counters (node, national)"].append(run("head", True))
    for k, v in res.items():
        print(f"{k:48s} " + " ".join(f"{x:5.1f}" for x in v) + f"  mean {sum(v) / len(v):5.1f} µs/change CPU")


if __name__ == "__main__":
    main()
