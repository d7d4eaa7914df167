"""The federation under test: processes, probes, writers, samplers.

Everything here uses the product only from the outside, the way an operator
or a monitoring script would: processes started by ``tests.support.launcher``, writes
through the Admin service over mutual TLS, and progress read from each
process's own database with separate read-only connections (a SQLite reader
never blocks a WAL writer; on PostgreSQL these are ordinary reads).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterator

import grpc
import sqlalchemy as sa
import tomli_w
from sqlalchemy.engine import make_url

from core.idnumber import check_char
from runtime.config import load_any
from tests.support.launcher import Federation
from core.samples import sample_person
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc

ORIGIN = "province-11"
DEST = "province-44"
HOPS = ("province-11", "hub-bohai", "hub-national", "hub-pearl", "province-44")
ROLE = {"province-11": "node", "province-44": "node", "hub-bohai": "regional hub", "hub-pearl": "regional hub",
        "hub-national": "national hub"}
CHUNK = 500
DAY = 24 * 3600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- PostgreSQL ---------------------------------------------------------------------
def pg_url(raw: str) -> sa.URL:
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


class PgDatabases:
    """Fresh databases on one server, one per process, dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin = pg_url(admin_url)
        self.engine = sa.create_engine(self.admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        self.created: list[str] = []
        self.tag = uuid.uuid4().hex[:8]

    def create(self, identity: str) -> str:
        name = f"yqbench_{self.tag}_{identity.replace('-', '_')}"
        with self.engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                try:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except sa.exc.DBAPIError as err:  # report, keep dropping the others
                    say(f"could not drop {name}: {err}")
        self.created.clear()
        self.engine.dispose()


def point_configs_at(configs: dict[str, Path], urls: dict[str, str]) -> None:
    """Rewrite the generated tomls' ``database`` to the given URLs."""
    for identity, path in configs.items():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        section = "hub" if "hub" in data else "node"
        data[section]["database"] = urls[identity]
        path.write_text(tomli_w.dumps(data), encoding="utf-8")


# -- reading progress from the stores ----------------------------------------------
class Probe:
    """Read-only queries on one process's store."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1]
            self.engine = sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true",
                                           connect_args={"timeout": 30, "check_same_thread": False})
        else:
            self.engine = sa.create_engine(url, pool_size=2, max_overflow=2, pool_pre_ping=True)

    def scalar(self, sql: str, **params: object) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar() or 0)

    def max_seq(self, origin: str = ORIGIN) -> int:
        # The (origin, seq) unique index makes this one index probe. Changes from one
        # origin are applied in seq order everywhere, so max(seq) counts them.
        return self.scalar("SELECT max(seq) FROM log WHERE origin = :o", o=origin)

    def delays(self, first_seq: int, last_seq: int, origin: str = ORIGIN) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT received_ms - at_ms FROM log WHERE origin = :o AND seq > :a "
                                        "AND seq <= :b"), {"o": origin, "a": first_seq, "b": last_seq}).all()
        return [int(r[0]) for r in rows]

    def arrivals(self, first_seq: int, last_seq: int, origin: str = ORIGIN) -> list[tuple[int, int]]:
        """(received_ms, changes) per applied batch, for origin's changes in (first_seq, last_seq]."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT received_ms, count(*) FROM log WHERE origin = :o AND seq > :a "
                                        "AND seq <= :b GROUP BY received_ms ORDER BY received_ms"),
                                {"o": origin, "a": first_seq, "b": last_seq}).all()
        return [(int(r[0]), int(r[1])) for r in rows]

    def received(self, first_seq: int, last_seq: int, origin: str = ORIGIN) -> dict[int, tuple[int, int]]:
        """seq -> (at_ms, received_ms) for origin's changes in (first_seq, last_seq]."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT seq, at_ms, received_ms FROM log WHERE origin = :o AND seq > :a "
                                        "AND seq <= :b"), {"o": origin, "a": first_seq, "b": last_seq}).all()
        return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def records(self) -> int:
        return self.scalar("SELECT count(*) FROM records")

    def body_bytes(self, origin: str = ORIGIN) -> float:
        with self.engine.connect() as conn:
            v = conn.execute(sa.text("SELECT avg(length(body)) FROM (SELECT body FROM log WHERE origin = :o "
                                     "ORDER BY seq DESC LIMIT 1000) AS t"), {"o": origin}).scalar()
        return float(v or 0)

    def close(self) -> None:
        self.engine.dispose()


# -- processes: memory and CPU ------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


class MemorySampler(threading.Thread):
    """Peak RSS (VmHWM) of every running process, kept across restarts."""

    def __init__(self, fed: Federation, interval: float = 0.5) -> None:
        super().__init__(name="memory", daemon=True)
        self.fed = fed
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.stop_event = threading.Event()
        self._lock = threading.Lock()

    def sample(self) -> None:
        with self._lock:
            for identity, proc in list(self.fed.procs.items()):
                st = proc_status(proc.pid)
                hwm = max(st.get("VmHWM", 0), st.get("VmRSS", 0))
                if hwm > self.peak.get(identity, 0):
                    self.peak[identity] = hwm

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.sample()

    def take(self) -> dict[str, int]:
        """The peaks so far, then start afresh (running processes keep their VmHWM)."""
        self.sample()
        with self._lock:
            peak, self.peak = self.peak, {}
        return peak


# -- writing at province 11 ------------------------------------------------------
def people_pool(n: int, residence: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    today = date.today()
    return [json.dumps(sample_person(rng, household="11", residence=residence, today=today), ensure_ascii=False)
            for _ in range(n)]


def chunks_of(pool: list[str], size: int, count: int, offset: int = 0) -> list[apb.ImportChunk]:
    out = []
    for c in range(count):
        rows = [apb.WriteRequest(kind="person", op="create", fields_json=pool[(offset + c * size + i) % len(pool)],
                                 line=i + 1) for i in range(size)]
        out.append(apb.ImportChunk(rows=rows))
    return out


@dataclass
class WriteStats:
    rows: int = 0
    errors: int = 0
    first_error: str | None = None
    ids: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0


# One ID is one person (issue 12): a create of a person the node holds is refused, so every row
# a writer sends is made a new person: its id_number gets a serial and area unique in this
# process (same birth date and sex, so the cross-field checks still hold).
_ROW_NUMBERS = itertools.count()
_ID_IN_JSON = re.compile(r'"id_number": "(\d{17}[\dX])"')


def distinct(chunk: apb.ImportChunk) -> apb.ImportChunk:
    rows = []
    for row in chunk.rows:
        n = next(_ROW_NUMBERS)
        m = _ID_IN_JSON.search(row.fields_json)
        assert m is not None, "a bench row without an id_number"
        old = m.group(1)
        body = f"{n // 500 % 1_000_000:06d}{old[6:14]}{2 * (n % 500) + int(old[16]) % 2:03d}"
        rows.append(apb.WriteRequest(kind=row.kind, op=row.op, line=row.line, record_id=row.record_id,
                                     fields_json=row.fields_json.replace(old, body + check_char(body), 1)))
    return apb.ImportChunk(rows=rows)


class Writer(threading.Thread):
    """One Import stream to node 11: ``chunks`` cycled until ``total`` rows or ``stop``.

    ``pace`` (seconds) spaces chunks on a fixed schedule (paced mode);
    ``hold`` returns True while the writer must wait (back-pressure).
    At most ``window`` chunks are unanswered at a time: without it gRPC's flow-control
    window lets the client run megabytes (tens of thousands of rows) ahead of the
    node, and those rows would still be written after ``stop``. Chunks must hold
    at most 500 rows (the node answers each 500-row batch with one report).
    """

    def __init__(self, channel: grpc.Channel, chunks: list[apb.ImportChunk], *, total: int | None = None,
                 stop: threading.Event, pace: float | None = None, hold: Callable[[], bool] | None = None,
                 keep_ids: int = 200, seed: int = 0, window: int = 2) -> None:
        super().__init__(name="writer", daemon=True)
        self.stub = apb_grpc.AdminStub(channel)
        self.chunks = chunks
        self.total = total
        self.stop_event = stop
        self.pace = pace
        self.hold = hold
        self.keep_ids = keep_ids
        self.rng = random.Random(seed)
        self.stats = WriteStats()
        self.sent = 0
        self.error: BaseException | None = None
        self.window = threading.Semaphore(window)
        assert all(len(c.rows) <= CHUNK for c in chunks)

    def requests(self) -> Iterator[apb.ImportChunk]:
        i = 0
        next_at = time.perf_counter()
        while not self.stop_event.is_set():
            if self.total is not None and self.sent >= self.total:
                return
            while self.hold is not None and self.hold() and not self.stop_event.is_set():
                time.sleep(0.02)
            while not self.window.acquire(timeout=0.1):
                if self.stop_event.is_set():
                    return
            if self.stop_event.is_set():
                return
            if self.pace is not None:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += self.pace
            chunk = distinct(self.chunks[i % len(self.chunks)])
            i += 1
            if self.total is not None and self.sent + len(chunk.rows) > self.total:
                chunk = apb.ImportChunk(rows=list(chunk.rows)[: self.total - self.sent])
            self.sent += len(chunk.rows)
            yield chunk

    def run(self) -> None:
        s = self.stats
        s.started = time.perf_counter()
        try:
            for report in self.stub.Import(self.requests(), timeout=DAY):
                self.window.release()
                for r in report.results:
                    if r.error:
                        s.errors += 1
                        s.first_error = s.first_error or r.error
                        continue
                    s.rows += 1
                    if len(s.ids) < self.keep_ids:
                        s.ids.append(r.record_id)
                    elif self.rng.random() < 0.01:
                        s.ids[self.rng.randrange(self.keep_ids)] = r.record_id
        except BaseException as err:  # noqa: BLE001 - reported by the phase that started us
            self.error = err
        finally:
            s.finished = time.perf_counter()


# -- the federation ----------------------------------------------------------------
class Bench:
    """A running federation (11 and 44, hubs national, bohai, pearl) plus probes."""

    PROVINCES = ["11", "44"]

    def __init__(self, root: Path, backend: str, pg_admin: str | None = None) -> None:
        self.root = root
        self.backend = backend
        self.fed = Federation.create(root, self.PROVINCES, timing=None)  # production's timing
        self.pg = PgDatabases(pg_admin) if pg_admin else None
        if self.pg is not None:
            point_configs_at(self.fed.configs, {i: self.pg.create(i) for i in self.fed.configs})
        self.urls = {i: load_any(p).database for i, p in self.fed.configs.items()}
        self.probes: dict[str, Probe] = {}
        self.channels: dict[str, grpc.Channel] = {}
        self.memory = MemorySampler(self.fed)
        self.progress: dict[str, int] = {}
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None

    # processes
    def start(self) -> None:
        tiers = [["hub-national"], ["hub-bohai", "hub-pearl"], ["province-11", "province-44"]]
        for tier in tiers:
            for identity in tier:
                self.fed.start(identity, wait=False)
            for identity in tier:
                self.fed.wait_healthy(identity, timeout=90)
        self.wait_linked()
        self.memory.start()
        self._poller = threading.Thread(target=self._poll, name="progress", daemon=True)
        self._poller.start()
        for identity, proc in self.fed.procs.items():
            say(f"  {identity}: pid {proc.pid}, log {self.fed.log_path(identity)}")

    def wait_linked(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            waiting = []
            for identity in self.fed.procs:
                if identity == "hub-national":
                    continue
                try:
                    st = self.status(identity, timeout=10)
                except grpc.RpcError as err:
                    waiting.append(f"{identity}: {err.code().name}")
                    continue
                link = st["hub"] if st["role"] == "node" else st["upstream"]
                if not (link and link["connected"] and not link["fallback"]):
                    waiting.append(f"{identity}: {link}")
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"links did not come up: {waiting}")
            time.sleep(0.3)

    def stop(self, identity: str) -> None:
        self.memory.sample()  # the process's VmHWM dies with it
        self._drop_channel(identity)
        self.fed.kill(identity, signal.SIGTERM)

    def restart(self, identity: str) -> None:
        self._drop_channel(identity)
        self.fed.start(identity, wait=False)

    def close(self) -> None:
        self._poll_stop.set()
        self.memory.stop_event.set()
        for identity in list(self.channels):
            self._drop_channel(identity)
        try:
            self.fed.stop_all()
        finally:
            for p in self.probes.values():
                p.close()
            if self.pg is not None:
                self.pg.drop_all()

    def pids(self) -> dict[str, int]:
        return {i: p.pid for i, p in self.fed.procs.items() if p.poll() is None}

    def cpu(self) -> dict[str, float]:
        out = {i: proc_cpu(pid) for i, pid in self.pids().items()}
        t = os.times()
        out["bench client"] = t.user + t.system
        return out

    def check_alive(self) -> None:
        for identity, proc in self.fed.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{identity} exited with {proc.returncode}; see {self.fed.log_path(identity)}")

    # talking to processes
    def channel(self, identity: str) -> grpc.Channel:
        ch = self.channels.get(identity)
        if ch is None:
            ch = self.channels[identity] = self.fed.channel(identity)
        return ch

    def _drop_channel(self, identity: str) -> None:
        ch = self.channels.pop(identity, None)
        if ch is not None:
            ch.close()

    def admin(self, identity: str) -> apb_grpc.AdminStub:
        return apb_grpc.AdminStub(self.channel(identity))

    def status(self, identity: str, timeout: float = 60) -> dict:
        return json.loads(self.admin(identity).Status(apb.Empty(), timeout=timeout).json)

    def probe(self, identity: str) -> Probe:
        p = self.probes.get(identity)
        if p is None:
            p = self.probes[identity] = Probe(self.urls[identity])
        return p

    # progress along the path 11 -> bohai -> national -> pearl -> 44
    def seqs(self) -> dict[str, int]:
        out = {}
        for identity in HOPS:
            try:
                out[identity] = self.probe(identity).max_seq()
            except sa.exc.OperationalError:  # a store not created yet (first start) or busy
                out[identity] = self.progress.get(identity, 0)
        return out

    def _poll(self) -> None:
        while not self._poll_stop.wait(0.2):
            try:
                self.progress = self.seqs()
            except Exception as err:  # noqa: BLE001 - keep polling; phases check liveness
                say(f"progress poll failed: {err}")

    def wait_for(self, identity: str, seq: int, timeout: float, what: str) -> float:
        """Block until ``identity`` holds origin 11's changes up to ``seq``; returns when (perf_counter)."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            have = self.probe(identity).max_seq()
            if have >= seq:
                return time.perf_counter()
            if have != last:
                last, last_change = have, time.monotonic()
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {identity} has seq {have} of {seq} after {timeout:.0f}s "
                                   f"(no progress for {time.monotonic() - last_change:.0f}s)")
            time.sleep(0.05)


# -- profiling --------------------------------------------------------------------
def start_profilers(pids: dict[str, int], out_dir: Path, seconds: float) -> list[tuple[str, Path, subprocess.Popen]]:
    spy = Path(sys.executable).with_name("py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for identity, pid in pids.items():
        path = out_dir / f"{identity}.txt"
        procs.append((identity, path, subprocess.Popen(
            [str(spy), "record", "--gil", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--format", "raw",
             "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    return procs


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PRODUCT = ("store/", "node/", "hub/", "core/", "certs/", "cli/")


def summarise_profile(path: Path, top: int = 8) -> dict[str, object]:
    """The top frames (self; inclusive for product code) from py-spy raw output.

    The profilers sample with ``--gil``: every sample is a thread running Python, so
    threads that wait (for work, the network, the store's lock, an fsync) do not count.
    """
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    busy = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return {"samples": 0}
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = [_FRAME.match(f) for f in stack.split(";") if f]
        if not frames or frames[-1] is None:
            continue
        leaf = frames[-1]
        busy += count
        name = f"{leaf['fn']} ({leaf['file']})"
        self_counts[name] = self_counts.get(name, 0) + count
        for fn in {f"{m['fn']} ({m['file']})" for m in frames if m and m["file"].startswith(PRODUCT)}:
            incl[fn] = incl.get(fn, 0) + count

    def pct(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / max(busy, 1), 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": busy, "busy_samples": busy, "self": pct(self_counts), "inclusive": pct(incl)}
