"""Fault injection for integration tests: kill, restart and freeze real processes.

Used by tests/integration/test_fault_run.py (the randomized fault run) and
tests/integration/test_clock_skew.py. Nothing here asserts; it acts, counts
and records, so a test can print what happened and judge it.

* ``Procs``: thread-safe process control over a ``tests.support.launcher.Federation``:
  SIGKILL + restart on the same store, SIGSTOP/SIGCONT (a frozen process is a
  partition for its peers: its sockets stay open, nothing answers), and
  ``heal_all`` (everything running and unfrozen again).
* ``plan_faults`` / ``FaultInjector``: a fault schedule drawn entirely from
  one ``random.Random(seed)`` (targets, kinds, start times, durations), so a
  failing run can be replayed with the same seed, and the thread that carries
  it out.
* ``Writer`` / ``Ledger``: steady operator write load through the Admin Write
  RPC, one thread per province, with a ledger of what was acknowledged and
  what may or may not have been written (a call that failed after it may have
  reached the node).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Sequence

import grpc

from runtime.config import load_any
from tests.support.launcher import Federation
from core.samples import sample_person
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc

# Test channels reconnect quickly after a restart (gRPC's default backoff grows to 2 minutes).
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def operator_channel(fed: Federation, identity: str) -> grpc.Channel:
    """An operator's channel to ``identity`` (as ``Federation.channel``), quick to reconnect."""
    cfg = load_any(fed.configs[identity])
    assert cfg.operator is not None
    creds = grpc.ssl_channel_credentials(root_certificates=cfg.operator.ca.read_bytes(),
                                         private_key=cfg.operator.key.read_bytes(),
                                         certificate_chain=cfg.operator.cert.read_bytes())
    return grpc.secure_channel(cfg.listen, creds, options=FAST_RECONNECT)


def tiers(fed: Federation) -> list[list[str]]:
    """Start order: the national hub, the regional hubs, the nodes."""
    hubs = [i for i in fed.configs if i.startswith("hub-") and i != "hub-national"]
    nodes = [i for i in fed.configs if not i.startswith("hub-")]
    return [["hub-national"], sorted(hubs), sorted(nodes)]


# -- process control --------------------------------------------------------------------------
class Procs:
    """Kill, restart, freeze and thaw a federation's processes from several threads."""

    def __init__(self, fed: Federation, env: dict[str, dict[str, str]] | None = None,
                 healthy_timeout: float = 90) -> None:
        self.fed = fed
        self.env = env or {}
        self.healthy_timeout = healthy_timeout
        self.lock = threading.RLock()
        self.frozen: set[str] = set()
        self.down: set[str] = set()
        self.events: list[tuple[float, str, str]] = []  # (monotonic, what, identity)
        self.errors: list[str] = []

    def _event(self, what: str, identity: str) -> None:
        self.events.append((time.monotonic(), what, identity))

    def start_all(self) -> None:
        for tier in tiers(self.fed):
            for identity in tier:
                self.fed.start(identity, wait=False, env=self.env.get(identity))
            for identity in tier:
                self.fed.wait_healthy(identity, timeout=self.healthy_timeout)

    def proc(self, identity: str) -> subprocess.Popen | None:
        return self.fed.procs.get(identity)

    def busy(self, identity: str) -> bool:
        with self.lock:
            return identity in self.frozen or identity in self.down

    def sigkill(self, identity: str) -> None:
        with self.lock:
            if identity in self.frozen:  # never kill a frozen process: thaw first (it dies at once anyway)
                self._cont(identity)
            self.fed.kill(identity, signal.SIGKILL)
            self.down.add(identity)
            self._event("SIGKILL", identity)

    def restart(self, identity: str) -> None:
        with self.lock:
            if identity not in self.down:
                return
            self.fed.start(identity, wait=False, env=self.env.get(identity))
            self.down.discard(identity)
            self._event("restart", identity)
        try:
            self.fed.wait_healthy(identity, timeout=self.healthy_timeout)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{identity} did not come back after a restart: {exc}")

    def freeze(self, identity: str) -> None:
        with self.lock:
            proc = self.proc(identity)
            if proc is None or proc.poll() is not None or identity in self.frozen:
                return
            proc.send_signal(signal.SIGSTOP)
            self.frozen.add(identity)
            self._event("SIGSTOP", identity)

    def _cont(self, identity: str) -> None:
        proc = self.proc(identity)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
        self.frozen.discard(identity)
        self._event("SIGCONT", identity)

    def thaw(self, identity: str) -> None:
        with self.lock:
            if identity in self.frozen:
                self._cont(identity)

    def thaw_all(self) -> None:
        """Every frozen process continued (teardown: a stopped process ignores SIGTERM)."""
        with self.lock:
            for identity in list(self.frozen):
                self._cont(identity)

    def heal_all(self) -> None:
        """Every process unfrozen and running (restarted on its store if it died), and healthy."""
        with self.lock:
            for identity in sorted(self.frozen):
                self._cont(identity)
            for identity in self.fed.configs:
                proc = self.proc(identity)
                if identity not in self.down and proc is not None and proc.poll() is not None:
                    self.errors.append(f"{identity} died on its own with exit code {proc.returncode}; "
                                       f"see {self.fed.log_path(identity)}")
                    self.fed.procs.pop(identity, None)
                    self.down.add(identity)
            restart = sorted(self.down)
        for identity in restart:
            self.restart(identity)
        for identity in self.fed.configs:
            self.fed.wait_healthy(identity, timeout=self.healthy_timeout)


# -- the fault schedule ------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    at_s: float  # seconds after the run started
    kind: str  # "kill" (SIGKILL, restart after hold_s) or "partition" (SIGSTOP, SIGCONT after hold_s)
    target: str
    hold_s: float

    def describe(self) -> str:
        verb = "SIGKILL, restart" if self.kind == "kill" else "SIGSTOP, SIGCONT"
        return f"t={self.at_s:5.1f}s {self.kind:9s} {self.target:14s} ({verb} after {self.hold_s:.1f}s)"


def plan_faults(rng: random.Random, targets: Sequence[str], seconds: float, *, gap: tuple[float, float] = (1, 3),
                kill_hold: tuple[float, float] = (0.5, 5), freeze_hold: tuple[float, float] = (1, 6),
                max_concurrent: int = 3, restart_margin: float = 5.0) -> list[Fault]:
    """A fault every ``gap`` seconds for ``seconds``, each on a random process that is not
    already faulted (by the schedule itself, so the plan depends on the seed alone)."""
    plan: list[Fault] = []
    busy_until = {t: 0.0 for t in targets}
    t = 0.0
    while True:
        t += rng.uniform(*gap)
        if t >= seconds:
            return plan
        kind = rng.choice(("kill", "partition"))
        hold = rng.uniform(*(kill_hold if kind == "kill" else freeze_hold))
        free = [x for x in targets if busy_until[x] <= t]
        if len(targets) - len(free) >= max_concurrent or not free:
            continue
        target = rng.choice(free)
        busy_until[target] = t + hold + (restart_margin if kind == "kill" else 0.5)
        plan.append(Fault(round(t, 2), kind, target, round(hold, 2)))


class FaultInjector(threading.Thread):
    """Carries out a fault plan against ``Procs``; heals each fault after its hold time."""

    def __init__(self, procs: Procs, plan: Sequence[Fault], log: Callable[[str], None] = print) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.procs = procs
        self.plan = list(plan)
        self.log = log
        self.stop_event = threading.Event()
        self.done: list[Fault] = []
        self.skipped: list[tuple[Fault, str]] = []
        self.healers: list[threading.Thread] = []
        self.started_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        for fault in self.plan:
            if self.stop_event.wait(max(0.0, self.started_at + fault.at_s - time.monotonic())):
                return
            if self.procs.busy(fault.target):  # its last fault (e.g. a slow restart) is not over yet
                self.skipped.append((fault, "still recovering from its previous fault"))
                self.log(f"fault: skipped {fault.describe()}: still recovering")
                continue
            self.log(f"fault: {fault.describe()} (real t={time.monotonic() - self.started_at:5.1f}s)")
            if fault.kind == "kill":
                self.procs.sigkill(fault.target)
                heal = self.procs.restart
            else:
                self.procs.freeze(fault.target)
                heal = self.procs.thaw
            self.done.append(fault)
            healer = threading.Thread(target=self._heal_later, args=(heal, fault), daemon=True)
            healer.start()
            self.healers.append(healer)

    def _heal_later(self, heal: Callable[[str], None], fault: Fault) -> None:
        self.stop_event.wait(fault.hold_s)  # stopping early heals at once
        heal(fault.target)

    def finish(self) -> None:
        """Stop injecting, wait for pending heals (restarts) to be carried out."""
        self.stop_event.set()
        self.join(timeout=10)
        for h in self.healers:
            h.join(timeout=120)

    def counts(self) -> dict[str, Counter]:
        out: dict[str, Counter] = {"kill": Counter(), "partition": Counter()}
        for f in self.done:
            out[f.kind][f.target] += 1
        return out


# -- write load and the ledger --------------------------------------------------------------------
@dataclass
class Entry:
    """One record as its writer knows it."""

    pid: str
    origin: str  # "province-44"
    provinces: frozenset[str]  # household and residence (never changed by the load)
    sent: dict[str, Any]  # the create's fields
    created: str  # "acked" or "ambiguous" (the create's reply was lost: it may or may not exist)
    via: str = "write"  # created by a Write or within an Import batch (one signature over several changes)
    acked: dict[str, Any] | None = None  # the last acknowledged Write's reply (record JSON with _meta)
    acked_fields: dict[str, Any] | None = None  # the fields as of the last acknowledged write
    acked_city: str | None = None
    maybe: list[str] = field(default_factory=list)  # markers of unacknowledged updates after the last ack
    acked_writes: int = 0  # acknowledged writes (create + updates)
    unsure_writes: int = 0  # writes (create + updates) whose reply was lost: each may or may not have landed


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, Entry] = {}
        self.counts: Counter = Counter()  # "<op> <outcome>" -> n
        self.errors: list[str] = []

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def total(self, outcome: str) -> int:
        return sum(n for k, n in self.counts.items() if k.endswith(" " + outcome))


def shown_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """A record's fields as the Admin API shows them, without its id and _meta."""
    return {k: v for k, v in rec.items() if k not in ("_meta", "person_id")}


# Outcomes of a Write call.
OK, NOT_WRITTEN, AMBIGUOUS, ERROR = "acked", "not-written", "ambiguous", "error"


def classify(err: grpc.RpcError) -> str:
    """Was anything written? A refused connection or the store's own UNAVAILABLE wrote nothing;
    a call cut off after it was sent (killed, frozen, timed out) may or may not have."""
    code, details = err.code(), (err.details() or "")
    if code == grpc.StatusCode.UNAVAILABLE:
        if "nothing was written" in details or "Connection refused" in details or "failed to connect" in details:
            return NOT_WRITTEN
        return AMBIGUOUS
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # refused before any handler ran (too many calls)
        return NOT_WRITTEN
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return AMBIGUOUS
    return ERROR


class Writer(threading.Thread):
    """Creates cross-province records at one province and updates the ones it created.

    Every update sets a unique marker (``residence_city = "w<n>"``). A call that
    failed ambiguously (its node was killed or frozen while it ran) may still land
    later: a frozen node handles the request when it is thawed. So the writer then
    waits until its node answers again, and never updates that record again: an
    unacknowledged write can never land after a later acknowledged one of the same
    record, and the record's final value must be its last acknowledged one or one
    of the unacknowledged ones after it.
    """

    markers = itertools.count(1)

    def __init__(self, fed: Federation, province: str, partners: Sequence[str], ledger: Ledger, seed: int,
                 rate: float, stop: threading.Event, *, same_region: Sequence[str] = (), today: date | None = None,
                 timeout: float = 5.0) -> None:
        super().__init__(name=f"writer-{province}", daemon=True)
        self.fed = fed
        self.province = province
        self.identity = f"province-{province}"
        self.partners = list(partners)
        self.same_region = list(same_region)
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.rate = rate
        self.stop_event = stop
        self.today = today or date.today()
        self.timeout = timeout
        self.mine: list[str] = []  # acknowledged creates: update candidates
        self.suspect = False

    def _call(self, stub: apb_grpc.AdminStub, op: str, pid: str, fields: dict[str, Any]) -> tuple[str, Any]:
        try:
            reply = stub.Write(apb.WriteRequest(kind="person", record_id=pid, op=op,
                                                fields_json=json.dumps(fields, ensure_ascii=False)),
                               timeout=self.timeout)
            return OK, json.loads(reply.json)
        except grpc.RpcError as err:
            return classify(err), f"{err.code().name}: {err.details()}"

    def _settle(self, stub: apb_grpc.AdminStub) -> None:
        """After an ambiguous call: wait until the node answers, then let late requests finish."""
        while not self.stop_event.is_set():
            try:
                stub.Status(apb.Empty(), timeout=2)
                break
            except grpc.RpcError:
                self.stop_event.wait(0.3)
        time.sleep(1.0)
        self.suspect = False

    def run(self) -> None:
        channel = operator_channel(self.fed, self.identity)
        stub = apb_grpc.AdminStub(channel)
        try:
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                next_at += self.rng.expovariate(self.rate)
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))
                if self.stop_event.is_set():
                    break
                next_at = max(next_at, time.monotonic() - 1)  # no catch-up bursts after a stall
                if self.suspect:
                    self._settle(stub)
                    if self.stop_event.is_set():
                        break
                if not self.mine or self.rng.random() < 0.35:
                    self._create(stub)
                else:
                    self._update(stub)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.ledger.errors.append(f"{self.name} crashed: {exc!r}")
        finally:
            channel.close()

    def _new_person(self) -> tuple[str, frozenset[str], dict[str, Any]]:
        pool = self.same_region if self.same_region and self.rng.random() < 0.25 else self.partners
        other = self.rng.choice(pool)
        household, residence = (self.province, other) if self.rng.random() < 0.5 else (other, self.province)
        fields = sample_person(self.rng, household=household, residence=residence, today=self.today)
        return self.fed.person_key(str(fields["id_number"])), frozenset({household, residence}), fields

    def _import(self, stub: apb_grpc.AdminStub, n: int) -> None:
        """Several creates in one Import call: one transaction, one signature over all of them (a
        Merkle batch), whose changes routing then splits across regions."""
        people = [self._new_person() for _ in range(n)]
        rows = [apb.WriteRequest(kind="person", record_id=pid, op="create", line=i + 1,
                                 fields_json=json.dumps(fields, ensure_ascii=False))
                for i, (pid, _, fields) in enumerate(people)]
        results: dict[int, apb.ImportResult] = {}
        try:
            for report in stub.Import(iter([apb.ImportChunk(rows=rows)]), timeout=self.timeout):
                results.update((r.line, r) for r in report.results)
            outcome, why = OK, ""
        except grpc.RpcError as err:
            outcome, why = classify(err), f"{err.code().name}: {err.details()}"
        if outcome == OK and len(results) != n:
            outcome, why = ERROR, f"Import answered {len(results)} of {n} rows"
        for i, (pid, provinces, fields) in enumerate(people):
            r = results.get(i + 1)
            if outcome == OK and r is not None and (r.error or r.record_id != pid):
                self.ledger.errors.append(f"{self.identity} import {pid}: {r.error or r.record_id}")
                continue
            self.ledger.count(f"import-create {outcome}")
            if outcome == OK:
                entry = Entry(pid, self.identity, provinces, fields, "acked", via="import", acked_fields=fields,
                              acked_city=str(fields["residence_city"]), acked_writes=1)
                self.mine.append(pid)
            elif outcome == AMBIGUOUS:
                entry = Entry(pid, self.identity, provinces, fields, "ambiguous", via="import", unsure_writes=1)
            else:
                continue
            with self.ledger.lock:
                self.ledger.entries[pid] = entry
        if outcome == AMBIGUOUS:
            self.suspect = True
        elif outcome == ERROR:
            self.ledger.errors.append(f"{self.identity} import of {n}: {why}")

    def _create(self, stub: apb_grpc.AdminStub) -> None:
        if self.rng.random() < 0.15:
            self._import(stub, self.rng.randint(2, 6))
            return
        pid, provinces, fields = self._new_person()
        household, residence = fields["household_province"], fields["residence_province"]
        outcome, reply = self._call(stub, "create", pid, fields)
        self.ledger.count(f"create {outcome}")
        if outcome == OK:
            entry = Entry(pid, self.identity, frozenset({household, residence}), fields, "acked", acked=reply,
                          acked_fields=shown_fields(reply), acked_city=str(reply["residence_city"]), acked_writes=1)
            with self.ledger.lock:
                self.ledger.entries[pid] = entry
            self.mine.append(pid)
        elif outcome == AMBIGUOUS:
            with self.ledger.lock:
                self.ledger.entries[pid] = Entry(pid, self.identity, frozenset({household, residence}), fields,
                                                 "ambiguous", unsure_writes=1)
            self.suspect = True
        elif outcome == ERROR:
            self.ledger.errors.append(f"{self.identity} create {pid}: {reply}")

    def _update(self, stub: apb_grpc.AdminStub) -> None:
        pid = self.rng.choice(self.mine)
        marker = f"w{next(self.markers)}"
        outcome, reply = self._call(stub, "update", pid, {"residence_city": marker})
        self.ledger.count(f"update {outcome}")
        with self.ledger.lock:
            entry = self.ledger.entries[pid]
            if outcome == OK:
                entry.acked, entry.acked_fields, entry.acked_city, entry.maybe = reply, shown_fields(reply), marker, []
                entry.acked_writes += 1
            elif outcome == AMBIGUOUS:
                entry.maybe.append(marker)
                entry.unsure_writes += 1
        if outcome == AMBIGUOUS:
            self.suspect = True
            self.mine.remove(pid)  # retired: see the class docstring
        elif outcome == ERROR:
            self.ledger.errors.append(f"{self.identity} update {pid} -> {marker}: {reply}")


def env_seed(name: str) -> tuple[int, bool]:
    """(seed, whether it came from the environment)."""
    raw = os.environ.get(name, "").strip()
    if raw:
        return int(raw), True
    return random.SystemRandom().randrange(1, 2**31), False


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default
