"""SIGKILL a regional hub while thousands of changes stream through it, restart
it: every change still arrives at its destination exactly once."""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from contextlib import closing

from tests.integration.conftest import Fed, eventually, person

THREADS = 4
RECORDS_PER_THREAD = 100
UPDATES_PER_RECORD = 4
TOTAL = THREADS * RECORDS_PER_THREAD * (1 + UPDATES_PER_RECORD)  # 2000 changes
CITIES = ("广州市", "深圳市", "东莞市", "佛山市")


def test_hub_sigkill_mid_stream_delivers_every_change_exactly_once(fresh_federation: Fed,
                                                                   rng: random.Random) -> None:
    fed = fresh_federation
    people = [[person(rng, household="45", residence="44") for _ in range(RECORDS_PER_THREAD)]
              for _ in range(THREADS)]
    fed.admin("province-44")  # open the channel once, before the threads share it
    lock = threading.Lock()
    written = [0]
    ids: list[str] = []
    errors: list[BaseException] = []

    def bump() -> None:
        with lock:
            written[0] += 1

    def writer(batch: list[dict]) -> None:
        try:
            mine = []
            for fields in batch:
                mine.append(fed.write("province-44", "create", fields)["person_id"])
                bump()
            with lock:
                ids.extend(mine)
            for round_ in range(UPDATES_PER_RECORD):
                for i, pid in enumerate(mine):
                    fed.write("province-44", "update",
                              {"children": round_ + 1, "residence_city": CITIES[(i + round_) % 4]}, pid)
                    bump()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(b,), daemon=True) for b in people]
    for t in threads:
        t.start()

    def arrived_at_45() -> int:
        return fed.status("province-45")["origins"].get("province-44", {}).get("last_seq", 0)

    # Kill hub-pearl mid-stream: writes are flowing and 45 is receiving them through it.
    eventually(lambda: written[0] >= TOTAL // 4 and arrived_at_45() > 0, 60,
               message=lambda: f"stream did not start: written {written[0]}, at 45 {arrived_at_45()}")
    fed.kill("hub-pearl", signal.SIGKILL)
    killed_at = written[0]
    assert killed_at < TOTAL, "the writers finished before the hub was killed"

    # Keep writing while it is down, then restart it on the same store.
    eventually(lambda: written[0] >= killed_at + TOTAL // 4 or not any(t.is_alive() for t in threads), 60)
    fed.start("hub-pearl")
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not errors, f"writes at 44 failed: {errors[:3]}"
    assert not any(t.is_alive() for t in threads)
    assert written[0] == TOTAL and len(ids) == THREADS * RECORDS_PER_THREAD

    at_44 = fed.list("province-44")
    assert set(at_44) == set(ids)

    def converged() -> bool:
        return fed.list("province-45") == at_44

    eventually(converged, 120, interval=1,
               message=lambda: f"45 holds {len(fed.list('province-45'))} of {len(at_44)} records, "
                               f"last seq from 44 {arrived_at_45()} of {TOTAL}")
    eventually(lambda: fed.list("hub-national") == at_44, 60, interval=1, message="national did not converge")

    # Each change of 44 applied at 45 exactly once: History rows, then the log itself.
    seen = []
    for pid in ids:
        seen += [(r["origin"], r["seq"]) for r in fed.history("province-45", pid)]
    assert len(seen) == len(set(seen)) == TOTAL
    assert set(seen) == {("province-44", s) for s in range(1, TOTAL + 1)}
    assert fed.status("province-45")["quarantined"] == 0
    eventually(lambda: fed.destination("hub-pearl", "province-45")["queue"] == 0, 30)

    fed.stop("province-45")
    db = fed.root / "nodes" / "45" / "node.db"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        dupes = conn.execute(
            "SELECT origin, seq, COUNT(*) FROM log GROUP BY origin, seq HAVING COUNT(*) > 1").fetchall()
        counts = conn.execute("SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM log "
                              "WHERE origin = 'province-44'").fetchone()
        quarantined = conn.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        records = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    assert dupes == []
    assert counts == (TOTAL, TOTAL, 1, TOTAL)
    assert quarantined == 0
    assert records == len(ids)
