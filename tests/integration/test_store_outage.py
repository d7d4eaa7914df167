"""A node whose own PostgreSQL server goes away and comes back.

Node 44 keeps its store on a PostgreSQL cluster this test owns (tests/support/pgcluster),
which it stops and starts again under the running node. What must hold (store/health.py,
runtime/link.py, runtime/outage.py): status names the store's outage (``store.ok`` false, its
``last_error`` and ``down_since_ms``) and keeps answering; the node blames no hub and does not
fall back to the national hub; an operator's write is refused UNAVAILABLE "the store is
unavailable"; the outage is logged once, without a traceback; and once the server is back,
sync resumes: everything written for 44 meanwhile arrives, once.
"""

from __future__ import annotations

import random
import re
import socket
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from tests.support.launcher import Federation
from tests.integration.conftest import Fed, eventually, person, small_federation, yipanqi
from tests.support.pgcluster import PgCluster

N44, N45, PEARL = "province-44", "province-45", "hub-pearl"
SLOW = 60


def scrape(fed: Fed, identity: str) -> dict[str, float]:
    """The unlabelled samples of a process's /metrics."""
    port = tomllib.loads(fed.fed.configs[identity].read_text())["node"]["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def test_a_postgresql_restart_is_the_stores_outage_not_the_hubs(tmp_path: Path, pg: PgCluster,
                                                                 rng: random.Random) -> None:
    def on_postgres(f: Federation) -> None:
        f.set_database(N44, pg.url)

    with small_federation(tmp_path / "fed", ["44", "45"], on_postgres) as fed:
        first = fed.write(N45, "create", person(rng, household="45", residence="44"))
        fed.arrives(N44, first["person_id"], first, timeout=SLOW)
        assert fed.status(N44)["store"] == {"ok": True, "down_since_ms": None, "last_error": None,
                                            "outages": 0, "backend": "postgresql"}

        pg.stop()
        stopped_ms = time.time_ns() // 1_000_000
        sent = {}
        for _ in range(3):  # 45 goes on writing for 44
            rec = fed.write(N45, "create", person(rng, household="45", residence="44"))
            sent[rec["person_id"]] = rec

        def store_down() -> dict:
            st = fed.status(N44)  # status answers without the store
            return st if not st["store"]["ok"] else {}
        st = eventually(store_down, SLOW, message=lambda: f"44 status: {fed.status(N44)}")
        assert st["store"]["last_error"] and st["store"]["down_since_ms"] >= stopped_ms - 1000, st
        assert st["records"] is None  # not a stale or made-up figure

        with pytest.raises(grpc.RpcError) as refused:
            fed.write(N44, "create", person(rng, household="44", residence="45"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the store is unavailable" in (refused.value.details() or "")

        human = " ".join(yipanqi("status", "-c", fed.fed.configs[N44], timeout=60).stdout.split())
        assert re.search(r"store\W+down since", human) and st["store"]["last_error"].split()[0] in human, human
        assert scrape(fed, N44)["yipanqi_store_up"] == 0
        assert "yipanqi_records" not in scrape(fed, N44)  # unknown, not 0

        # Starting a node on a database that is not there: one line naming it, no traceback.
        # (A copy of 44's config on a free port: the same address would be refused first, as a
        # second instance.)
        cfg = tomllib.loads(Path(fed.fed.configs[N44]).read_text())
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            cfg["node"]["listen"] = f"127.0.0.1:{s.getsockname()[1]}"
        cfg["node"].pop("metrics_port", None)
        other = Path(fed.fed.configs[N44]).with_name("second.toml")
        other.write_text(tomli_w.dumps(cfg))
        again = yipanqi("node", "run", "-c", str(other), timeout=60)
        assert again.returncode != 0 and "Traceback" not in again.stderr, again.stderr
        assert "[node].database: the store is unavailable: " in again.stderr.strip().splitlines()[-1], again.stderr

        deadline = time.monotonic() + 5  # down for a while: never a fallback, never a hub blamed
        while time.monotonic() < deadline:
            hub = fed.status(N44)["hub"]
            assert not hub["fallback"] and hub["hub"] in (None, "pearl"), hub
            assert not (hub["last_error"] or "").startswith("hub-"), hub
            time.sleep(0.25)

        pg.start()
        for pid, rec in sent.items():
            fed.arrives(N44, pid, rec, timeout=SLOW)
        st = eventually(lambda: (s := fed.status(N44))["store"]["ok"] and s["hub"]["connected"] and s,
                        SLOW, message=lambda: f"44 status: {fed.status(N44)}")
        assert st["store"]["outages"] == 1 and st["store"]["last_error"] is None, st["store"]
        assert st["hub"]["hub"] == "pearl" and not st["hub"]["fallback"], st["hub"]
        assert scrape(fed, N44)["yipanqi_store_up"] == 1
        for pid in sent:
            keys = [(r["origin"], r["seq"]) for r in fed.history(N44, pid)]
            assert len(keys) == len(set(keys)) == 1, keys

        log = fed.fed.log_path(N44).read_text(errors="replace")
        assert log.count("store unavailable:") == 1, log
        assert "store available again" in log, log
        assert "Traceback" not in log, log
        assert "hub-pearl unavailable" not in log and "(fallback)" not in log, log
        assert N44 not in [d["peer"] for d in fed.status("hub-national")["destinations"]]  # never on national
