"""Bench: `yipanqi assess` on the national hub's store at 1,000,000 people and 100,000 requests.

    .venv/bin/python -m bench.assess                       # full size (loading ~10-15 min, ~1.5 GB of disk)
    .venv/bin/python -m bench.assess --people 20000 --requests 2000 --services 5000 --certificates 2000   # quick
    .venv/bin/python -m bench.assess --people 20000 --requests 2000 --changes 1500000   # the delivery delays at size

How this works: a national hub store (SQLite, the hub's own schema and migrations) is loaded
with real record rows: person, request, service and certificate states built by the pure
core's write path and saved by the store's own save (record rows, projections and counters in
one transaction per 5,000). All persons live outside their household province, as on the
national hub. The change log the delivery delays come from is loaded too (``--changes``,
default one change per record loaded): rows as the hub's log holds them, inserted directly
(origin, at_ms over the last 120 days, received_ms = at_ms + a delay, via a regional hub;
the body, seal and proof are placeholder bytes, which no assessment query reads), with the
delay histograms the hub's ingest keeps beside it (store.delays), added per 50,000 rows. Then the real national hub process is started on that store (tests.support.launcher, real
mTLS) and ``Admin.Assess`` is called as ``yipanqi assess`` calls it: the first call (cold
caches) and the median of the next five are reported against the 2 s target, plus
``Admin.Flows`` (what ``report flows`` asks for).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.launcher import Federation
from core.hlc import Timestamp
from core.provinces import PROVINCES
from core.record import empty
from core.samples import sample_person
from store.store import Store
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc

TARGET_S = 2.0
CHUNK = 5000
TODAY = dt.date.today()


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _day(rng: random.Random, back: int) -> dt.date:
    return TODAY - dt.timedelta(days=rng.randrange(back))


def load(url: str, people: int, requests: int, services: int, certificates: int, seed: int = 15) -> dict[str, int]:
    rng = random.Random(seed)
    codes = list(PROVINCES)
    store = Store.open(url, owner="hub-national", index_routes=True, hold_records=True)
    counts = {"person": 0, "request": 0, "service": 0, "certificate": 0}
    persons: list[tuple[str, str, str]] = []  # (person_id, household, residence) for the other kinds
    wall = int(time.time() * 1000)

    def save(batch: list) -> None:  # type: ignore[type-arg]
        with store._lock, store.engine.begin() as conn:
            store._save(conn, [(st, None) for st in batch], wall)
        for st in batch:
            counts[st.kind] += 1

    def state(kind: str, values: dict, writer: str, i: int):  # type: ignore[no-untyped-def]
        node = f"province-{writer}"
        return empty(kind, _id(rng)).write(values, node=node, at=Timestamp(wall + i, 0, node))

    samples = [sample_person(random.Random(i), household="11", residence="44", today=TODAY) for i in range(200)]
    batch = []
    for i in range(people):
        household, residence = rng.sample(codes, 2)
        values = {**samples[i % len(samples)], "household_province": household, "residence_province": residence,
                  "moved_in_on": _day(rng, 3 * 365).isoformat()}
        st = state("person", values, residence, i)
        persons.append((st.record_id, household, residence))
        batch.append(st)
        if len(batch) >= CHUNK:
            save(batch)
            batch = []
            if len(persons) % 100_000 == 0:
                print(f"  {len(persons)} people", file=sys.stderr, flush=True)
    for i in range(requests):
        pid, household, residence = persons[rng.randrange(len(persons))]
        frm, to, side = (residence, household, "household") if rng.random() < 0.6 else (household, residence, "residence")
        sent = _day(rng, 120)
        values = {"from_province": frm, "to_province": to, "to_side": side, "person_id": pid, "subject": "核实婚姻状况",
                  "sent_on": sent.isoformat(), "due_on": (sent + dt.timedelta(days=15)).isoformat(), "state": "open"}
        roll = rng.random()
        if roll < 0.75:
            answered = min(TODAY, sent + dt.timedelta(days=rng.randrange(25)))
            values.update(state="answered", answer="已核实", answered_on=answered.isoformat())
        elif roll < 0.85:
            values.update(state="closed", closed_on=min(TODAY, sent + dt.timedelta(days=20)).isoformat())
        batch.append(state("request", values, frm, i))
        if len(batch) >= CHUNK:
            save(batch)
            batch = []
    for i in range(services):
        pid, household, residence = persons[rng.randrange(len(persons))]
        kind = "certificate_check" if rng.random() < 0.2 else "pregnancy_check"
        values = {"person_id": pid, "type": kind, "on": _day(rng, 365).isoformat(), "provider_province": residence,
                  "household_province": household, "residence_province": residence}
        batch.append(state("service", values, residence, i))
        if len(batch) >= CHUNK:
            save(batch)
            batch = []
    for i in range(certificates):
        pid, household, residence = persons[rng.randrange(len(persons))]
        issued = _day(rng, 700)
        revoked = rng.random() < 0.05
        values = {"person_id": pid, "household_province": household, "residence_province": residence,
                  "issued_on": issued.isoformat(), "expires_on": (issued + dt.timedelta(days=730)).isoformat(),
                  "status": "revoked" if revoked else "issued", "status_on": issued.isoformat()}
        batch.append(state("certificate", values, household, i))
        if len(batch) >= CHUNK:
            save(batch)
            batch = []
    if batch:
        save(batch)
    store.close()
    return counts


def load_log(url: str, changes: int, seed: int = 16) -> int:
    """``changes`` log rows as the national hub's log holds changes received from the regional hubs."""
    from core.delays import day_of
    from store import changelog, delays
    from store.db import insert_rows
    from store.schema import log

    rng = random.Random(seed)
    codes = list(PROVINCES)
    store = Store.open(url, owner="hub-national", index_routes=True, hold_records=True)
    now = int(time.time() * 1000)
    seqs = {c: 0 for c in codes}
    body, sig, proof = b"{}", b"\0" * 64, b""
    try:
        for start in range(0, changes, 50_000):
            rows = []
            for lsn in range(start + 1, min(changes, start + 50_000) + 1):
                code = codes[rng.randrange(len(codes))]
                seqs[code] += 1
                at = now - rng.randrange(120 * 86_400_000)
                delay = int(rng.expovariate(1 / 2000)) if rng.random() < 0.98 else rng.randrange(600_000)
                rows.append((lsn, f"province-{code}", seqs[code], "person", _id(rng), "update", None, at,
                             lsn.to_bytes(32, "big"), body, "bench", sig, 0, 1, proof, f",{code},", True,
                             "hub-pearl", at + delay, None, None))  # no openings, no relay: v1 changes
            by_day: dict[int, dict[tuple[str, int], list[int]]] = {}  # the counters ingest keeps (store.delays)
            for row in rows:
                origin, at, received = row[1], row[7], row[18]
                cells = by_day.setdefault(day_of(received), {})
                for key, (n, total) in delays.tally([(origin, at)], received).items():
                    cell = cells.setdefault(key, [0, 0])
                    cell[0] += n
                    cell[1] += total
            with store._lock, store.engine.begin() as conn:
                insert_rows(conn, log, changelog._LOG_COLUMNS, rows)
                for day, cells in by_day.items():
                    delays.upsert(conn, day, cells)
    finally:
        store.close()
    return changes


def measure(root: Path, db: Path, runs: int = 5) -> dict[str, object]:
    fed = Federation.create(root / "fed", ["44"], timing=None)
    fed.set_database("hub-national", f"sqlite:///{db}")
    fed.start("hub-national", wait=False)
    try:
        fed.wait_healthy("hub-national", timeout=300)
        stub = apb_grpc.AdminStub(fed.channel("hub-national"))

        def timed(method: str) -> tuple[float, dict]:
            t0 = time.perf_counter()
            reply = getattr(stub, method)(apb.PeriodRequest(), timeout=120)
            return time.perf_counter() - t0, json.loads(reply.json)

        first, doc = timed("Assess")
        warm = [timed("Assess")[0] for _ in range(runs)]
        period: list[float] = []
        t0 = time.perf_counter()
        stub.Assess(apb.PeriodRequest(from_date=(TODAY - dt.timedelta(days=30)).isoformat(),
                                      to_date=TODAY.isoformat()), timeout=120)
        period.append(time.perf_counter() - t0)
        flows_s, flows = timed("Flows")
        return {"assess_first_s": round(first, 3), "assess_median_s": round(statistics.median(warm), 3),
                "assess_max_s": round(max(warm), 3), "assess_30_days_s": round(period[0], 3),
                "flows_s": round(flows_s, 3),
                "migrants": sum(p["residence"]["migrants"] for p in doc["provinces"]),
                "requests_received": sum(p[s]["requests"]["received"] for p in doc["provinces"]
                                         for s in ("residence", "household")),
                "flow_pairs": len(flows["flows"]),
                "delivery_changes": sum(p["federation"]["delivery_changes"] for p in doc["provinces"])}
    finally:
        fed.stop_all()


def breakdown(db: Path) -> dict[str, float]:
    """Seconds per query of the assessment, in this process, on the same store (hub stopped)."""
    from store import assess as q
    from store.db import open_engine

    today = TODAY.isoformat()
    engine = open_engine(f"sqlite:///{db}")
    out = {}
    try:
        with engine.connect() as conn:
            for name, run in (("pairs", lambda: q.migrant_pairs(conn)),
                              ("requests", lambda: q.request_figures(conn, None, None, today)),
                              ("served", lambda: q.served_migrants(conn, None, None)),
                              ("certificate_checks", lambda: q.certificate_checks(conn, None, None)),
                              ("issued", lambda: q.certificates_issued(conn, None, None)),
                              ("revoked", lambda: q.certificates_revoked(conn, None, None)),
                              ("quarantined", lambda: q.quarantined_by_origin(conn, None, None)),
                              ("quarantined_by_party", lambda: q.quarantined_by_party(conn, None, None)),
                              ("delivery", lambda: q.delivery_delays(conn, None, None)),
                              ("delivery_30_days", lambda: q.delivery_delays(
                                  conn, (TODAY - dt.timedelta(days=30)).isoformat(), None)),
                              ("flows_with_period", lambda: q.migrant_pairs(conn, moved_from="2000-01-01"))):
                t0 = time.perf_counter()
                run()
                out[name] = round(time.perf_counter() - t0, 3)
    finally:
        engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--services", type=int, default=300_000)
    ap.add_argument("--certificates", type=int, default=100_000)
    ap.add_argument("--changes", type=int, help="change-log rows (default: one per record loaded)")
    ap.add_argument("--workdir", type=Path, help="keep the store here (reused when it exists: no reload)")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="yipanqi-bench-assess-"))
    root.mkdir(parents=True, exist_ok=True)
    db = root / "national.db"
    try:
        loaded: dict[str, int] | None = None
        t0 = time.perf_counter()
        if not db.exists():
            print(f"loading {args.people} people, {args.requests} requests, {args.services} services, "
                  f"{args.certificates} certificates into {db}", file=sys.stderr, flush=True)
            loaded = load(f"sqlite:///{db}", args.people, args.requests, args.services, args.certificates)
            changes = args.changes if args.changes is not None else sum(loaded.values())
            print(f"loading {changes} change-log rows", file=sys.stderr, flush=True)
            loaded["log"] = load_log(f"sqlite:///{db}", changes)
        load_s = time.perf_counter() - t0
        shutil.rmtree(root / "fed", ignore_errors=True)
        result = {"loaded": loaded, "load_s": round(load_s, 1), "db_mb": round(db.stat().st_size / 2**20),
                  **measure(root, db), "queries_s": breakdown(db)}
        result["target_s"] = TARGET_S
        result["pass"] = result["assess_first_s"] < TARGET_S and result["assess_median_s"] < TARGET_S  # type: ignore[operator]
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
