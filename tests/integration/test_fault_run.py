"""The randomized fault run: steady writes while processes are killed and frozen.

A federation of six provinces across all four regions (11, 13 bohai; 31
yangtze; 44, 45 pearl; 65 northwest), every hub and node its own process,
real gRPC over mutual TLS on loopback, on SQLite or on PostgreSQL (a fresh
database per process). Four writer threads (provinces 11, 31, 44, 65) create
cross-province records and update the ones they created through the Admin
Write RPC (now and then a few creates in one Import call instead: one batch
signature over changes that routing splits across regions), while a fault
injector driven by one seed SIGKILLs processes (and restarts them on their
store) or freezes them (SIGSTOP/SIGCONT: a partition for their peers), the
national hub and the writers' own nodes included.

When the faults stop, everything is brought back, and the run must converge:
every replica of every record identical (values, conflicts, deletion), every
acknowledged write present, nothing applied twice, nothing quarantined, and no
province holding a record that does not involve it.

Replay a run: YIPANQI_FAULT_SEED=<seed printed by the run>; make it longer:
YIPANQI_FAULT_SECONDS=120. (The seed fixes the fault plan and the writes'
content; the interleaving with real time is not reproducible.) Other knobs,
for exploring: YIPANQI_FAULT_WRITES_PER_S (30), YIPANQI_FAULT_KILL_S ("0.5,5":
how long a killed process stays down), YIPANQI_FAULT_FREEZE_S ("1,6": how long
a frozen one stays frozen; past the keepalive, ~7 s with the launcher's TEST_TIMING, its peers give up on it),
YIPANQI_FAULT_CONCURRENT (3: faults at once), YIPANQI_FAULT_CONVERGE_SECONDS.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.support.launcher import TEST_TIMING, Federation
from tests.integration.conftest import Fed, running, eventually, person
from tests.support.faults import (Entry, FaultInjector, Ledger, Procs, Writer, env_float, env_seed, plan_faults,
                                  shown_fields)

PROVINCES = ["11", "13", "31", "44", "45", "65"]
REGION = {"11": "bohai", "13": "bohai", "31": "yangtze", "44": "pearl", "45": "pearl", "65": "northwest"}
WRITERS = ["11", "31", "44", "65"]
NATIONAL = "hub-national"
WRITES_PER_S = env_float("YIPANQI_FAULT_WRITES_PER_S", 30)  # in total, over all writers
CONVERGE_S = env_float("YIPANQI_FAULT_CONVERGE_SECONDS", 180)


def env_range(name: str, default: tuple[float, float]) -> tuple[float, float]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    lo, hi = (float(x) for x in raw.split(","))
    return lo, hi


class Report:
    """What the run did, printed as it goes (pytest -s) and kept for the failure message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            print(f"[fault-run] {line}", flush=True)
            with self.path.open("a") as f:
                f.write(line + "\n")


class PgDatabases:
    """One fresh PostgreSQL database per process, dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.names: list[str] = []

    def __call__(self, identity: str) -> str:
        name = f"t_fault_{identity.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        with self.engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.engine.connect() as conn:
            for name in self.names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.engine.dispose()


@pytest.fixture
def fault_federation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Fed, Procs]]:
    backend = request.param
    databases = PgDatabases(request.getfixturevalue("pg_admin_url")) if backend == "postgresql" else None
    fed = Fed(Federation.create(tmp_path / "fed", PROVINCES, database=databases))
    procs = Procs(fed.fed)
    try:
        with running(fed, lambda: (procs.start_all(), fed.wait_linked(90)), stop=procs.thaw_all):
            yield fed, procs
    finally:
        if databases is not None:
            databases.drop()


# -- checking the outcome ---------------------------------------------------------------------------
def origin_problems(entry: Entry, rec: dict[str, Any] | None) -> list[str]:
    """Is the origin's copy what its writer was told (acknowledged), give or take writes whose
    reply was lost (each may or may not have landed), and nothing else?"""
    pid = entry.pid
    if rec is None:
        return [] if entry.created == "ambiguous" else [f"LOST: acknowledged create {pid} missing at {entry.origin}"]
    out = []
    meta = rec["_meta"]
    if meta["conflicts"] or meta["deleted"]:
        out.append(f"{pid} at {entry.origin}: conflicts {meta['conflicts']} deleted {meta['deleted']} "
                   f"(only its origin ever writes it)")
    fields = shown_fields(rec)
    if entry.acked_fields is None:  # a create whose reply was lost, and it did land
        if fields != entry.sent:
            out.append(f"{pid} at {entry.origin}: {fields} != created {entry.sent}")
    elif not entry.maybe:
        if fields != entry.acked_fields or (entry.acked is not None and rec != entry.acked):
            out.append(f"LOST/ALTERED: {pid} at {entry.origin} is {rec} but the last acknowledged write "
                       f"made it {entry.acked or entry.acked_fields}")
    else:
        allowed = {entry.acked_city, *entry.maybe}
        if fields.get("residence_city") not in allowed or \
                {**fields, "residence_city": None} != {**entry.acked_fields, "residence_city": None}:
            out.append(f"LOST/ALTERED: {pid} at {entry.origin}: residence_city {fields.get('residence_city')!r} "
                       f"not in {sorted(allowed)} (last acknowledged {entry.acked_city!r}), or other fields differ")
    return out


def check(ledger: Ledger, snap: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    problems: list[str] = []
    for pid, entry in ledger.entries.items():
        rec = snap[entry.origin].get(pid)
        problems += origin_problems(entry, rec)
        holders = [f"province-{p}" for p in sorted(entry.provinces)] + [NATIONAL]
        for identity in holders:
            copy = snap[identity].get(pid)
            if copy != rec:
                what = "missing" if copy is None else ("should not exist" if rec is None else "differs")
                problems.append(f"DIVERGED: {pid} ({entry.origin}, involves {sorted(entry.provinces)}) at "
                                f"{identity} {what}: {copy} vs origin {rec}")
    for identity, records in snap.items():
        for pid, rec in records.items():
            entry = ledger.entries.get(pid)
            if entry is None:
                problems.append(f"UNKNOWN: {identity} holds {pid}, which no writer wrote: {rec}")
                continue
            if identity != NATIONAL:
                province = identity.split("-", 1)[1]
                involved = {rec.get("household_province"), rec.get("residence_province")}
                if province not in involved:
                    problems.append(f"PRIVACY: {identity} holds {pid}, which involves only {sorted(involved)}")
    return problems


def snapshot(fed: Fed) -> dict[str, dict[str, dict[str, Any]]]:
    return {identity: fed.list(identity, include_deleted=True)
            for identity in [f"province-{p}" for p in PROVINCES] + [NATIONAL]}


def summarise(counts: Counter) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"


# -- the run ----------------------------------------------------------------------------------------
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("fault_federation", [pytest.param("sqlite", id="sqlite"),
                                              pytest.param("postgresql", id="postgresql",
                                                           marks=pytest.mark.postgres)],
                         indirect=True)
def test_randomized_fault_run_converges(fault_federation: tuple[Fed, Procs], request: pytest.FixtureRequest) -> None:
    fed, procs = fault_federation
    backend = request.node.callspec.id
    seed, from_env = env_seed("YIPANQI_FAULT_SEED")
    seconds = env_float("YIPANQI_FAULT_SECONDS", 30)
    report = Report(fed.root / "fault-run.log")
    began = time.monotonic()
    report(f"backend {backend}; seed {seed} ({'from YIPANQI_FAULT_SEED' if from_env else 'random'}; replay with "
           f"YIPANQI_FAULT_SEED={seed}); faults for {seconds:.0f}s; federation in {fed.root}")

    def fail(message: str) -> None:
        report(f"FAILED: {message.splitlines()[0][:300]}")
        pytest.fail(f"{message}\n\n--- fault run (seed {seed}, {backend}) ---\n" + "\n".join(report.lines),
                    pytrace=False)

    def run() -> str:
        rng = random.Random(seed)
        targets = sorted(fed.fed.configs)
        kill_hold = env_range("YIPANQI_FAULT_KILL_S", (0.5, 5))
        freeze_hold = env_range("YIPANQI_FAULT_FREEZE_S", (1, 6))
        concurrent = int(env_float("YIPANQI_FAULT_CONCURRENT", 3))
        plan = plan_faults(rng, targets, seconds, kill_hold=kill_hold, freeze_hold=freeze_hold,
                           max_concurrent=concurrent)
        report(f"fault plan: {len(plan)} faults on {len(targets)} processes (down {kill_hold[0]:g}-"
               f"{kill_hold[1]:g}s, frozen {freeze_hold[0]:g}-{freeze_hold[1]:g}s, at most {concurrent} at once; "
               f"{WRITES_PER_S:g} writes/s)")
        for fault in plan:
            report(f"  planned {fault.describe()}")

        ledger = Ledger()
        stop = threading.Event()
        writers = []
        for province in WRITERS:
            partners = [p for p in PROVINCES if REGION[p] != REGION[province]]
            same = [p for p in PROVINCES if REGION[p] == REGION[province] and p != province]
            writers.append(Writer(fed.fed, province, partners, ledger, rng.getrandbits(64),
                                  WRITES_PER_S / len(WRITERS), stop, same_region=same))
        injector = FaultInjector(procs, plan, log=report)

        for w in writers:
            w.start()
        injector.start()
        try:
            time.sleep(seconds)
        finally:
            stop.set()
            stopped_at = time.monotonic()
            injector.finish()
        for w in writers:
            w.join(timeout=60)
        report(f"faults stopped after {time.monotonic() - began:.1f}s; bringing every process back")
        procs.heal_all()
        fed.close()  # drop channels to processes that were restarted
        kinds = injector.counts()
        report(f"faults injected: {len(injector.done)} of {len(plan)} planned"
               f" ({len(injector.skipped)} skipped: target still recovering)")
        report(f"  kills (SIGKILL + restart): {sum(kinds['kill'].values())}: {summarise(kinds['kill'])}")
        report(f"  partitions (SIGSTOP + SIGCONT): {sum(kinds['partition'].values())}: {summarise(kinds['partition'])}")
        report(f"writes: {sum(ledger.counts.values())} made; {ledger.total('acked')} acknowledged, "
               f"{ledger.total('ambiguous')} unanswered (may or may not have landed), "
               f"{ledger.total('not-written')} refused while the node was down; by op: {summarise(ledger.counts)}")
        acked_records = sum(1 for e in ledger.entries.values() if e.created == "acked")
        imported = sum(1 for e in ledger.entries.values() if e.created == "acked" and e.via == "import")
        report(f"records: {acked_records} acknowledged creates ({imported} of them in Import batches: one signature "
               f"over several changes), {len(ledger.entries) - acked_records} creates unanswered")
        if any(w.is_alive() for w in writers):
            fail("a writer thread did not stop")
        if ledger.errors:
            fail("writes failed in a way that is not a node being down:\n" + "\n".join(ledger.errors[:20]))
        if procs.errors:
            fail("process control failed:\n" + "\n".join(procs.errors))
        if ledger.total("acked") < 50:
            fail(f"only {ledger.total('acked')} writes were acknowledged: the load did not run")

        # -- convergence -------------------------------------------------------------------------------
        t0 = time.monotonic()
        problems: list[str] = []
        snap: dict[str, dict[str, dict[str, Any]]] = {}
        polls = 0
        while True:
            polls += 1
            try:
                snap = snapshot(fed)
                problems = check(ledger, snap)
            except Exception as exc:  # noqa: BLE001 - a process still waking up; try again
                problems = [f"snapshot failed: {exc!r}"]
            if not problems or time.monotonic() - t0 > CONVERGE_S:
                break
            time.sleep(2)
        converge_s = time.monotonic() - t0
        if problems:
            kinds_of = Counter(p.split(":", 1)[0] for p in problems)
            fail(f"not converged {converge_s:.0f}s after every process was back ({len(problems)} problems: "
                 f"{summarise(kinds_of)}):\n" + "\n".join(problems[:30]))
        report(f"converged {converge_s:.1f}s after every process was back ({time.monotonic() - stopped_at:.1f}s after "
               f"the faults stopped; {polls} polls); "
               + ", ".join(f"{i} {len(r)}" for i, r in snap.items()))

        # Nothing in flight any more (outboxes acknowledged, hub queues empty).
        fed.quiet(timeout=90)
        report("quiet: every outbox acknowledged, every hub queue empty")

        # Every link is back where it belongs, as both ends see it: each node on its home hub (after a
        # fallback session's recheck interval), each regional hub upstream, and each hub's status lists
        # its own nodes (the national hub: the regional hubs) as connected.
        t1 = time.monotonic()
        links: list[str] = []

        def home() -> bool:
            links[:] = []
            for identity in sorted(fed.fed.configs):
                st = fed.status(identity)
                if st["role"] == "node" or identity != NATIONAL:
                    link = st["hub"] if st["role"] == "node" else st["upstream"]
                    if not (link and link["connected"] and not link["fallback"]):
                        links.append(f"{identity} link {link}")
                if st["role"] == "hub":
                    region = identity.split("-", 1)[1]
                    expected = ({f"hub-{REGION[p]}" for p in PROVINCES} if identity == NATIONAL else
                                {f"province-{p}" for p in PROVINCES if REGION[p] == region})
                    rows = {row["peer"]: row for row in st["destinations"]}
                    links.extend([f"{identity} sees {peer} as {rows.get(peer)}" for peer in sorted(expected)
                                  if not (rows.get(peer) or {}).get("connected")])
            return not links

        try:
            eventually(home, 90, interval=1)
        except AssertionError:
            fail("links did not come back home after the faults:\n" + "\n".join(links))
        report(f"links: every node on its home hub, every hub connected both ways ({time.monotonic() - t1:.1f}s)")

        # -- exactly once, same history everywhere ------------------------------------------------------
        regional = sorted(i for i in fed.fed.configs if i.startswith("hub-") and i != NATIONAL)
        history_problems: list[str] = []
        present = [e for e in ledger.entries.values() if e.pid in snap[e.origin]]
        newest: dict[tuple[str, str], int] = {}  # (province node, origin) -> highest seq it holds from that origin
        for entry in present:
            holders = [f"province-{p}" for p in sorted(entry.provinces)] + [NATIONAL]
            at_origin = [(r["origin"], r["seq"]) for r in fed.history(entry.origin, entry.pid)]
            low, high = entry.acked_writes, entry.acked_writes + entry.unsure_writes
            if not low <= len(at_origin) <= high or {o for o, _ in at_origin} != {entry.origin}:
                history_problems.append(f"{entry.pid} at {entry.origin}: {len(at_origin)} changes, expected "
                                        f"{low}..{high} ({entry.acked_writes} acknowledged): {at_origin}")
            for identity in holders + regional:
                rows = [(r["origin"], r["seq"]) for r in fed.history(identity, entry.pid)]
                if len(rows) != len(set(rows)):
                    dupes = [k for k, n in Counter(rows).items() if n > 1]
                    history_problems.append(f"APPLIED TWICE: {entry.pid} at {identity}: {dupes}")
                if identity in holders and sorted(rows) != sorted(at_origin):
                    history_problems.append(f"{entry.pid}: history at {identity} {sorted(rows)} != at origin "
                                            f"{sorted(at_origin)}")
                if identity.startswith("province-"):
                    for origin, seq in rows:
                        newest[(identity, origin)] = max(newest.get((identity, origin), 0), seq)

        # Status agrees with the data (record and conflict counts, what arrived from each origin, our own
        # sequence and its acknowledgement), after every crash and restart in the run.
        status_problems: list[str] = []
        for identity in [f"province-{p}" for p in PROVINCES] + [NATIONAL]:
            st = fed.status(identity)
            live = [r for r in snap[identity].values() if not r["_meta"]["deleted"]]
            conflicted = [r for r in live if r["_meta"]["conflicts"]]
            if (st["records"], st["conflicts"]) != (len(live), len(conflicted)):
                status_problems.append(f"{identity} status says {st['records']} records, {st['conflicts']} conflicted; "
                                       f"it holds {len(live)}, {len(conflicted)} conflicted")
            if st["role"] != "node":
                continue
            if not st["last_seq"] == st["acked_seq"] == newest.get((identity, identity), 0):
                status_problems.append(f"{identity} status last_seq {st['last_seq']} acked_seq {st['acked_seq']}, but "
                                       f"its own changes go up to seq {newest.get((identity, identity), 0)}")
            expected = {o: seq for (i, o), seq in newest.items() if i == identity and o != identity}
            shown = {o: row["last_seq"] for o, row in st["origins"].items()}
            if shown != expected:
                status_problems.append(f"{identity} status origins {shown} != changes it holds {expected}")
        quarantined = {i: fed.quarantine(i) for i in sorted(fed.fed.configs)}
        # Equivocation is kept and flagged in status (core.intakeplan), no longer quarantined.
        equivocations = {i: fed.status(i).get("equivocating") or {} for i in sorted(fed.fed.configs)}
        report(f"histories checked for {len(present)} records at {len(PROVINCES)} provinces, the national hub and "
               f"{len(regional)} regional hubs: {len(history_problems)} problems; quarantined: "
               + ", ".join(f"{i} {len(rows)}" for i, rows in quarantined.items()))
        report(f"status checked at {len(PROVINCES)} provinces and the national hub: {len(status_problems)} problems")
        if history_problems:
            fail("histories are wrong:\n" + "\n".join(history_problems[:30]))
        if status_problems:
            fail("status disagrees with the data:\n" + "\n".join(status_problems[:30]))
        if any(equivocations.values()):
            fail(f"equivocation flagged: { {i: rows for i, rows in equivocations.items() if rows} }")
        if any(quarantined.values()):
            fail(f"changes were quarantined: { {i: rows[:3] for i, rows in quarantined.items() if rows} }")
        # Faults are expected; exceptions nobody handled are not (the error interceptor logs a traceback
        # for anything that is not a domain error: "a bug").
        errors, tracebacks = Counter(), []
        for identity in sorted(fed.fed.configs):
            lines = fed.fed.log_path(identity).read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if " ERROR " in line:
                    errors[f"{identity}: {line.split(' ERROR ', 1)[1][:160]}"] += 1
                if line.startswith("Traceback"):
                    tracebacks.append(f"{identity}: " + "\n".join(lines[max(0, i - 1):i + 30]))
        report(f"process logs: {sum(errors.values())} ERROR lines, {len(tracebacks)} tracebacks"
               + "".join(f"\n  {n} x {line}" for line, n in errors.most_common(10)))
        if tracebacks:
            fail("unhandled exceptions in the process logs:\n" + "\n\n".join(tracebacks[:5]))
        return (f"PASSED: seed {seed}, {backend}, {len(injector.done)} faults, {ledger.total('acked')} acknowledged "
                f"writes on {acked_records} records, converged in {converge_s:.1f}s, "
                f"run {time.monotonic() - began:.0f}s in all")

    try:
        report(run())
    except Exception as exc:  # an unexpected error still gets the run's summary (pytest.fail is no Exception)
        fail(f"{type(exc).__name__}: {exc}")


# -- a long partition of a home hub --------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_frozen_home_hub_is_left_for_the_fallback_within_keepalive(tmp_path: Path) -> None:
    """A home hub that stops answering without closing anything (SIGSTOP: a partition, not a crash)
    is given up within the channel keepalive ([timing].keepalive_s + keepalive_timeout_s: 20 s + 10 s in
    production, the launcher's TEST_TIMING here), and the node syncs through its fallback.

    (gRPC waits for a ping's ack up to its general ping timeout, 60 s by default, whatever the
    keepalive timeout says, unless that is set too: the node used to sit on the frozen hub for
    60-80 s, its writes going nowhere.)
    """
    rng = random.Random(tmp_path.name)
    fed = Fed(Federation.create(tmp_path / "fed", ["11", "44", "45"]))
    procs = Procs(fed.fed)
    with running(fed, lambda: (procs.start_all(), fed.wait_linked(60)), stop=procs.thaw_all):
        before = fed.write("province-44", "create", person(rng, household="44", residence="11"))
        fed.arrives("province-11", before["person_id"], before)

        procs.freeze("hub-pearl")
        frozen_at = time.monotonic()
        during = fed.write("province-44", "create", person(rng, household="44", residence="11"))
        arrived = fed.arrives("province-11", during["person_id"], during, timeout=120)
        took = time.monotonic() - frozen_at
        link = fed.status("province-44")["hub"]
        print(f"[fault-run] hub-pearl frozen: 44's write reached 11 after {took:.1f}s, 44 is on {link}", flush=True)
        via = [r["via"] for r in fed.history(NATIONAL, during["person_id"])]
        assert arrived and via == ["province-44"], f"not pushed straight to the national hub (fallback): {via}"
        keepalive = TEST_TIMING["keepalive_s"] + TEST_TIMING["keepalive_timeout_s"]
        assert took < keepalive + 15, f"44 stayed on its frozen home hub for {took:.0f}s (keepalive: {keepalive:g} s)"

        procs.thaw("hub-pearl")
        to_45 = fed.write("province-44", "create", person(rng, household="45", residence="44"))
        fed.arrives("province-45", to_45["person_id"], to_45, timeout=90)
        fed.wait_linked(90)  # everyone back on their home hub
        fed.quiet(60)
        for identity in fed.fed.configs:
            assert fed.quarantine(identity) == [], identity

