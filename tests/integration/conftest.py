"""Integration fixtures: a real federation of OS processes on loopback.

Every hub and node runs as its own process (``tests.support.launcher.Federation``),
talking real gRPC over real mutual TLS. Tests reach them only the way an
operator would: the Admin service over an operator certificate.

* ``federation`` (module scope): provinces 11, 13 (bohai), 31 (yangtze),
  44, 45 (pearl), plus hub-national, hub-bohai, hub-yangtze, hub-pearl; for
  tests that do not kill anything and do not disturb each other.
* ``fresh_federation`` (function scope): the same, for tests that kill,
  restart or partition processes.

Both always ``stop_all()``. When a test (or a federation's startup) fails,
the tail of every process log is attached to the failure report.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.launcher import Federation
from core.samples import sample_person
from yipanqi.v2 import admin_pb2 as apb
from yipanqi.v2 import admin_pb2_grpc as apb_grpc
from yipanqi.v2 import federation_pb2 as fpb
from yipanqi.v2 import federation_pb2_grpc as fpb_grpc

PROVINCES = ["11", "13", "31", "44", "45"]
HUBS = ["hub-national", "hub-bohai", "hub-yangtze", "hub-pearl"]
NODES = [f"province-{p}" for p in PROVINCES]
LOG_TAIL_LINES = 40

# Federations currently running, so a failure report can show their logs.
_LIVE: list["Fed"] = []


def eventually(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2,
               message: str | Callable[[], str] = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is
    shown if the deadline passes).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: Any = None
    while True:
        try:
            last_value = predicate()
            if last_value:
                return last_value
            last_exc = None
        except (AssertionError, grpc.RpcError, KeyError, LookupError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            why = message() if callable(message) else message
            detail = f"last error: {last_exc!r}" if last_exc else f"last value: {last_value!r}"
            raise AssertionError(f"condition not met within {timeout}s: {why} ({detail})")
        time.sleep(interval)


def person(rng: random.Random, household: str, residence: str) -> dict[str, object]:
    return sample_person(rng, household=household, residence=residence, today=date.today())


class Fed:
    """A running federation plus operator helpers (one admin channel per identity)."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.root = fed.root
        self._channels: dict[str, grpc.Channel] = {}

    # -- processes -----------------------------------------------------------
    def start_all(self, timeout: float = 40) -> None:
        """Start every process, upstream first, and wait until every link is up on its home hub.

        (Starting nodes before their hub listens would send them to their
        fallback hub for a while, which would make the tests' paths random.)
        """
        ids = list(self.fed.configs)
        tiers = [["hub-national"], sorted(i for i in ids if i.startswith("hub-") and i != "hub-national"),
                 sorted(i for i in ids if i.startswith("province-"))]
        for tier in tiers:
            for identity in tier:
                self.fed.start(identity, wait=False)
            for identity in tier:
                self.fed.wait_healthy(identity, timeout=60)
        self.wait_linked(timeout)

    def wait_linked(self, timeout: float = 40) -> None:
        """Every running node is connected to its home hub, every running regional hub upstream."""

        def linked() -> bool:
            for identity in self.fed.configs:
                if identity == "hub-national" or not self.fed.running(identity):
                    continue
                st = self.status(identity)
                link = st["hub"] if st["role"] == "node" else st["upstream"]
                if not (link and link["connected"] and not link["fallback"]):
                    return False
            return True

        eventually(linked, timeout, interval=0.3, message="links did not come up on their home hubs")

    def start(self, identity: str) -> None:
        self._drop(identity)
        self.fed.start(identity, wait=False)
        self.fed.wait_healthy(identity, timeout=60)

    def kill(self, identity: str, sig: int = signal.SIGKILL) -> None:
        self._drop(identity)
        self.fed.kill(identity, sig)

    def stop(self, identity: str) -> None:
        self.kill(identity, signal.SIGTERM)

    def close(self) -> None:
        for identity in list(self._channels):
            self._drop(identity)

    def _drop(self, identity: str) -> None:
        channel = self._channels.pop(identity, None)
        if channel is not None:
            channel.close()

    # -- operator calls ----------------------------------------------------------
    def admin(self, identity: str) -> apb_grpc.AdminStub:
        channel = self._channels.get(identity)
        if channel is None:
            channel = self._channels[identity] = self.fed.channel(identity)
        return apb_grpc.AdminStub(channel)

    def write(self, identity: str, op: str, fields: dict[str, object], record_id: str = "") -> dict[str, Any]:
        reply = self.admin(identity).Write(
            apb.WriteRequest(kind="person", record_id=record_id, op=op,
                             fields_json=json.dumps(fields, ensure_ascii=False)), timeout=30)
        return json.loads(reply.json)

    def get(self, identity: str, person_id: str) -> dict[str, Any] | None:
        try:
            reply = self.admin(identity).Get(apb.RecordRef(kind="person", record_id=person_id), timeout=10)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return json.loads(reply.json)

    def list(self, identity: str, **flags: bool) -> dict[str, dict[str, Any]]:
        out = {}
        for msg in self.admin(identity).List(apb.ListRequest(kind="person", **flags), timeout=60):
            # List streams pages of records (RecordPage); older servers streamed single records.
            for r in (msg.records if hasattr(msg, "records") else [msg]):
                out[r.record_id] = json.loads(r.json)
        return out

    def history(self, identity: str, person_id: str) -> list[dict[str, Any]]:
        try:
            reply = self.admin(identity).History(apb.RecordRef(kind="person", record_id=person_id), timeout=10)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
        return json.loads(reply.json)

    def status(self, identity: str) -> dict[str, Any]:
        return json.loads(self.admin(identity).Status(apb.Empty(), timeout=10).json)

    def quarantine(self, identity: str) -> list[dict[str, Any]]:
        return json.loads(self.admin(identity).Quarantine(apb.Empty(), timeout=10).json)

    def destination(self, hub: str, peer: str) -> dict[str, Any]:
        rows = [d for d in self.status(hub)["destinations"] if d["peer"] == peer]
        assert len(rows) == 1, f"{hub} status lists {peer} {len(rows)} times"
        return rows[0]

    # -- waiting ---------------------------------------------------------------------
    def arrives(self, identity: str, person_id: str, expected: dict[str, Any], timeout: float = 30) -> dict:
        """Wait until ``identity`` holds the record exactly as ``expected`` (fields and _meta)."""
        return eventually(lambda: (r := self.get(identity, person_id)) == expected and r, timeout,
                          message=lambda: f"{person_id} at {identity}: {self.get(identity, person_id)} "
                                          f"!= {expected}")

    def quiet(self, timeout: float = 45) -> None:
        """Wait until nothing is in flight: every node's outbox is acknowledged and
        every running hub's queues (to each destination and upstream) are empty."""

        def unsettled() -> list[str]:
            waiting = []
            for identity in list(self.fed.procs):
                if not self.fed.running(identity):
                    continue
                st = self.status(identity)
                if st["role"] == "node":
                    if st["outbox"]["changes"]:
                        waiting.append(f"{identity} outbox {st['outbox']}")
                    if not (st["hub"] or {}).get("connected"):
                        waiting.append(f"{identity} link {st['hub']}")
                else:
                    for row in st["destinations"]:
                        if identity == "hub-national" and row["peer"].startswith("province-"):
                            continue  # a province's fallback queue at national; it pulls from home
                        if row["queue"] and self.fed.running(row["peer"]):
                            waiting.append(f"{identity} -> {row['peer']} queue {row['queue']}")
                    if st.get("upstream_queue", {}).get("changes"):
                        waiting.append(f"{identity} upstream queue {st['upstream_queue']}")
            return waiting

        problems: list[str] = []

        def settled() -> bool:
            problems[:] = unsettled()
            return not problems

        eventually(settled, timeout, interval=0.3, message=lambda: f"federation did not quiesce: {problems}")

    # -- diagnostics -------------------------------------------------------------------
    def log_tails(self, lines: int = LOG_TAIL_LINES) -> str:
        out = []
        for identity in sorted(self.fed.configs):
            path = self.fed.log_path(identity)
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                text = ["(no log)"]
            state = "running" if self.fed.running(identity) else "not running"
            out.append(f"===== {identity} ({state}) {path} =====")
            out.extend(text)
        return "\n".join(out)


ROOT = Path(__file__).resolve().parents[2]


def yipanqi(*args: object, cwd: Path = ROOT, timeout: float = 180,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as an operator would (no terminal size, no stdin); the finished process.
    ``env``: variables to add (e.g. COLUMNS, for a table wide enough to show whole values)."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def yipanqi_ok(*args: object) -> str:
    """``yipanqi`` that must succeed; its stdout."""
    r = yipanqi(*args)
    assert r.returncode == 0, f"yipanqi {' '.join(map(str, args))} exited {r.returncode}: {r.stderr}{r.stdout}"
    return r.stdout


class RawPush:
    """A hand-driven Federation.Push stream, for tests that play a peer by hand."""

    def __init__(self, channel: grpc.Channel, timeout: float = 90) -> None:
        self._requests: queue.Queue[fpb.PushRequest | None] = queue.Queue()
        self.call = fpb_grpc.FederationStub(channel).Push(iter(self._requests.get, None), timeout=timeout)
        self._responses = iter(self.call)

    def exchange(self, request: fpb.PushRequest) -> fpb.PushResponse:
        self._requests.put(request)
        return next(self._responses)

    def send(self, request: fpb.PushRequest) -> None:
        """Send a message that gets no answer (a report)."""
        self._requests.put(request)

    def close(self) -> None:
        self._requests.put(None)
        assert list(self._responses) == []


@contextmanager
def running(fed: Fed, start: Callable[[], object], *, stop: Callable[[], object] | None = None) -> Iterator[Fed]:
    """``start`` a created federation and yield it; always stopped afterwards (``stop`` first,
    e.g. to thaw frozen processes). Meanwhile a failing test's report carries its logs, and a
    start that fails says so with them."""
    _LIVE.append(fed)
    try:
        try:
            start()
        except Exception as exc:
            raise RuntimeError(f"the federation did not start: {exc}\n{fed.log_tails()}") from exc
        yield fed
    finally:
        fed.close()
        if stop is not None:
            stop()
        fed.fed.stop_all()
        _LIVE.remove(fed)


def _launch(root: Path) -> Iterator[Fed]:
    fed = Fed(Federation.create(root, PROVINCES))
    with running(fed, fed.start_all):
        yield fed


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    yield from _launch(tmp_path_factory.mktemp("fed"))


@pytest.fixture
def fresh_federation(tmp_path: Path) -> Iterator[Fed]:
    yield from _launch(tmp_path / "fed")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call") and _LIVE:
        for fed in _LIVE:
            report.sections.append((f"federation logs ({fed.root})", fed.log_tails()))


@contextmanager
def small_federation(root: Path, provinces: list[str],
                     configure: Callable[[Federation], None] | None = None) -> Iterator["Fed"]:
    """A federation of just these provinces (and the hubs they need), started, always stopped."""
    fed = Fed(Federation.create(root, provinces))
    if configure is not None:
        configure(fed.fed)
    with running(fed, fed.start_all):
        yield fed
