"""Starting and stopping a local federation's processes (the demo and the tests).

Each hub and node is its own OS process (`python -m cli.main hub|node run`),
logging to a file under the federation directory; processes can be killed
with real signals and restarted on the same store.

Configs get ``TEST_TIMING`` as their ``[timing]`` section (runtime.config.Timing), so the tests
do not wait out production's constants (a 20 s fallback recheck, a 20 + 10 s keepalive); the
demo and the bench pass ``timing=None`` and run with production's.

With test timing, each SQLite store starts as a copy of a template this worker migrated once
(``_template_store``), so a process does not run the 12 migrations and load Alembic on every
fresh start (a fresh store's schema is the same either way). The migrations themselves still run
from empty in tests/contract/test_migrations.py and test_store.py, and in the demo and bench.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import tomli_w

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime.config import load_any
from store.db import migrate, open_engine, sqlite_file
from cli.federation import HUB_ORDER, init_federation, node_port
from runtime.transport import channel_options, secure_channel


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _worker_slot() -> tuple[int, int]:
    """(this pytest-xdist worker's index, the number of workers); (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return (int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0) % count, count


def _ephemeral_low(default: int = 32768) -> int:
    """Where the kernel's ephemeral ports start (Linux: ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def pick_base_port(provinces: list[str], rng: random.Random | None = None) -> int:
    """A base port whose hub and node ports are all free on loopback.

    A port is checked free here but bound later, by the process started on it, so the blocks
    lie below the kernel's ephemeral range (an outgoing connection can take any port in it
    meanwhile), and under pytest-xdist each worker draws from its own share of the 300-port
    blocks, so two workers never pick the same block."""
    rng = rng or random.Random()
    slot, count = _worker_slot()
    top = max(_ephemeral_low(), 20000) - 300
    for _ in range(200):
        base = rng.randrange(10000 + 300 * slot, top, 300 * count)
        ports = ([base + i for i in range(len(HUB_ORDER))] + [base + 10 + i for i in range(len(HUB_ORDER))]
                 + [node_port(base, p) for p in provinces] + [base + 200 + int(p) for p in provinces])
        if all(_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range on 127.0.0.1")


# A channel that found nothing listening waits out gRPC's reconnect backoff (1 s, then 1.6 s,
# 2.56 s, ...) before it tries again, and every call fails at once meanwhile: a start polled
# through one channel was seen healthy seconds after it was (about 5 s per tier of a federation).
# The launcher's probes try again every 0.1-0.2 s instead.
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 200)]

# Short enough that no test waits on them, long enough for 2 busy cores: online_s stays well above
# report_every_s (a regional hub relays a node's report on its own next report).
TEST_TIMING: dict[str, float] = {
    "fallback_recheck_s": 5.0,
    "max_backoff_s": 2.0,
    "revocation_recheck_s": 1.0,
    "report_every_s": 2.0,
    "keepalive_s": 4.0,
    "keepalive_timeout_s": 3.0,
    "online_s": 10.0,
    "sweep_s": 0.5,
    "receipt_alert_s": 5.0,
}


_TEMPLATE: Path | None = None


def _template_store() -> Path:
    """An empty SQLite store at HEAD, migrated once per (worker) process and then copied."""
    global _TEMPLATE
    if _TEMPLATE is None:
        path = Path(tempfile.mkdtemp(prefix="yipanqi-template-")) / "store.db"
        engine = open_engine(f"sqlite:///{path}")
        try:
            migrate(engine)
        finally:
            engine.dispose()  # the WAL is checkpointed into the file: one file to copy
        _TEMPLATE = path
    return _TEMPLATE


@dataclass
class Federation:
    root: Path
    configs: dict[str, Path]  # identity -> config path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # identity -> the module to run it with instead of cli.main (tests only: e.g. a hub with one
    # behaviour swapped, tests/support/rogue_hub.py); given the same "-c CONFIG".
    entries: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, provinces: list[str], base_port: int | None = None,
               database: Callable[[str], str] | None = None,
               timing: dict[str, float] | None = TEST_TIMING) -> "Federation":
        """Certificates and configs for a local federation; ``database`` maps an
        identity to a SQLAlchemy URL to use instead of its SQLite file; ``timing`` is written as
        every config's [timing] section (None: none, production's timing)."""
        base = base_port or pick_base_port(provinces)
        fed = cls(root, init_federation(root, provinces, base))
        if timing is not None:
            for identity in fed.configs:
                fed.set_timing(identity, timing)
        if database is not None:
            for identity in fed.configs:
                fed.set_database(identity, database(identity))
        elif timing is not None:
            for identity in fed.configs:
                fed.seed_store(identity)
        return fed

    def seed_store(self, identity: str) -> None:
        """Give an identity that has no store yet a copy of the migrated template (0600)."""
        target = sqlite_file(load_any(self.configs[identity]).database)
        if not target or Path(target).exists():
            return
        Path(target).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, _template_store().open("rb") as src:
            shutil.copyfileobj(src, out)

    def set_database(self, identity: str, url: str) -> None:
        """Point an identity's config at another store (e.g. a PostgreSQL database)."""
        path = self.configs[identity]
        data = tomllib.loads(path.read_text())
        data["hub" if identity.startswith("hub-") else "node"]["database"] = url
        path.write_text(tomli_w.dumps(data))

    def set_timing(self, identity: str, timing: dict[str, float]) -> None:
        """Write an identity's [timing] section (runtime.config.Timing's keys, in seconds)."""
        path = self.configs[identity]
        data = tomllib.loads(path.read_text())
        data["timing"] = dict(timing)
        path.write_text(tomli_w.dumps(data))

    # -- processes -------------------------------------------------------------
    def start(self, identity: str, *, wait: bool = True, env: dict[str, str] | None = None) -> None:
        path = self.configs[identity]
        role = "hub" if identity.startswith("hub-") else "node"
        logs = self.root / "logs"
        if not logs.exists():
            logs.mkdir(mode=0o700)
            os.chmod(logs, 0o700)
        fd = os.open(logs / f"{identity}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        out = os.fdopen(fd, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.procs[identity] = subprocess.Popen(
            [sys.executable, "-m", *(self.entries.get(identity) or ["cli.main", role, "run"]), "-c", str(path)],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        out.close()
        if wait:
            self.wait_healthy(identity)

    def start_all(self) -> None:
        order = sorted(self.configs, key=lambda i: (not i.startswith("hub-"), i != "hub-national", i))
        for identity in order:
            self.start(identity, wait=False)
        for identity in order:
            self.wait_healthy(identity)

    def kill(self, identity: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(identity, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for identity in list(self.procs):
            proc = self.procs[identity]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for identity in list(self.procs):
            proc = self.procs.pop(identity)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def running(self, identity: str) -> bool:
        proc = self.procs.get(identity)
        return proc is not None and proc.poll() is None

    # -- talking to processes --------------------------------------------------------
    def channel(self, identity: str) -> grpc.Channel:
        """An operator's channel to a running node or hub (its config's [operator] credentials)."""
        cfg = load_any(self.configs[identity])
        assert cfg.operator is not None
        return secure_channel(cfg.listen, cfg.identity, cfg.operator.ca, cfg.operator.cert, cfg.operator.key)

    def probe_channel(self, identity: str) -> grpc.Channel:
        """Like ``channel``, but it reconnects within 0.2 s (FAST_RECONNECT): for polling a
        process that is starting."""
        cfg = load_any(self.configs[identity])
        assert cfg.operator is not None
        creds = grpc.ssl_channel_credentials(root_certificates=cfg.operator.ca.read_bytes(),
                                             private_key=cfg.operator.key.read_bytes(),
                                             certificate_chain=cfg.operator.cert.read_bytes())
        return grpc.secure_channel(cfg.listen, creds, options=channel_options() + FAST_RECONNECT)

    def wait_healthy(self, identity: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self.probe_channel(identity) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                proc = self.procs.get(identity)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{identity} exited with {proc.returncode}; see {self.log_path(identity)}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{identity} not healthy after {timeout}s; see {self.log_path(identity)}")
                time.sleep(0.1)

    def person_key(self, id_number: str) -> str:
        """This federation's key for a person (core.personkey), from the secret made with its CA."""
        from certs.secret import read
        from core.personkey import person_key

        return person_key(read(self.root / "ca" / "federation.secret", "federation secret"), id_number)

    def log_path(self, identity: str) -> Path:
        return self.root / "logs" / f"{identity}.log"
