"""The storage contract (store.store.Store), one test body per behaviour, run on
SQLite and PostgreSQL through the ``db_url`` fixture.

Deltas (v2, core.delta) are built through the real code paths only: an author's Store
(``write_local`` sealed by a real federation Signer) produces the log entries,
their envelopes go through ``runtime.intake.check`` with a real Verifier, and the
store under test ingests what intake accepted and quarantines what it refused. A
forgery is what a real attacker can send: a body a province signs with its own real
key, or bytes altered after signing.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from core import canonical
from core.change import Envelope
from core.delta import Delta, commitment
from core.delta import parse as delta_parse
from core.errors import LocalError, UnknownAuthor
from core.graphstate import state_of
from core.hlc import Timestamp
from core.person import validate_person
from core.routing import Filter
from core.samples import sample_person
from runtime.intake import check
from store.db import HEAD, MIGRATIONS, current_revision, migrate, open_engine
from store.schema import log, metadata, records
from store import changelog
from store.store import IngestResult, LogEntry, ReceivedDelta, Store, Written
from tests.support.pki import PKI

ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 1, 15)
T0 = 1_768_435_200_000  # 2026-01-15T00:00Z in ms
KIND = "person"


class Boom(Exception):
    """Raised on purpose in the middle of a write."""


# -- helpers ---------------------------------------------------------------------------


def upsert(values: dict[str, object]) -> Callable[[object], tuple[str, dict[str, object]]]:
    return lambda current: ("create" if current is None else "update", dict(values))


def digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def log_rows(store: Store) -> list[tuple]:
    """Every log row as plain values, in lsn order."""
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(log).order_by(log.c.lsn)).all())


def record_rows(store: Store) -> list[tuple]:
    cols = [records.c.kind, records.c.record_id, records.c.state, records.c.deleted,
            records.c.conflicted, records.c.provinces]
    with store.engine.connect() as conn:
        return [(r[0], r[1], bytes(r[2]), *r[3:])
                for r in conn.execute(sa.select(*cols).order_by(records.c.kind, records.c.record_id))]


def snapshot(store: Store) -> tuple[list[tuple], list[tuple], int]:
    """What must not change when a write or ingest is rolled back or is a no-op."""
    return log_rows(store), record_rows(store), store.count_quarantined()


def log_digests(store: Store) -> set[bytes]:
    with store.engine.connect() as conn:
        return {bytes(d) for d in conn.execute(sa.select(log.c.digest)).scalars()}


def record_ids(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(records.c.record_id)).scalars())


@contextmanager
def failing_writes(store: Store, table: str, *, after: int = 0) -> Iterator[list[str]]:
    """Fail (like a full disk) every statement writing ``table`` after the first ``after``.

    Works below the Store (an engine event), so it does not depend on how the store
    orders or batches its statements; yields the list of writes seen to ``table``.
    """
    pattern = re.compile(rf'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?{table}"?[\s(]', re.I)
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if pattern.match(statement):
            seen.append(table)
            if len(seen) > after:
                raise Boom(f"cannot write {table}")

    sa.event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)


class Authors:
    """Province nodes authoring changes in their own (SQLite) stores."""

    def __init__(self, pki: PKI, tmp: Path, opened: list[Store], seed: int = 7) -> None:
        self.pki = pki
        self.tmp = tmp
        self.opened = opened
        self.rng = random.Random(seed)
        self.stores: dict[str, Store] = {}
        self.clock = T0

    def store(self, owner: str) -> Store:
        if owner not in self.stores:
            s = Store.open(f"sqlite:///{self.tmp / f'author-{owner}.db'}", owner=owner)
            self.opened.append(s)
            self.stores[owner] = s
        return self.stores[owner]

    def person(self, household: str, residence: str) -> dict[str, object]:
        return validate_person(sample_person(self.rng, household=household, residence=residence, today=TODAY),
                               today=TODAY)

    def now(self) -> int:
        self.clock += 1000
        return self.clock

    def write(self, owner: str, household: str, residence: str, *, values: dict[str, object] | None = None,
              record_id: str | None = None, operator: str | None = None, store: Store | None = None,
              sealer=None) -> tuple[Written, Envelope]:  # type: ignore[no-untyped-def]
        """One write_local by ``owner``; returns the delta written and its envelope as logged."""
        s = store or self.store(owner)
        values = values or self.person(household, residence)
        rid = record_id or str(values["id_number"])
        ch = s.write_local(KIND, rid, upsert(values), operator=operator, now_ms=self.now(),
                           seal=sealer or self.pki.sealer(owner))
        (entry,) = [e for e in s.history(KIND, rid) if e.seq == ch.seq and e.origin == owner]
        return ch, entry.envelope




def open_store(url: str, opened: list[Store], **kw) -> Store:  # type: ignore[no-untyped-def]
    s = Store.open(url, **kw)
    opened.append(s)
    return s


def accept_all(pki: PKI, envs: list[Envelope], **kw) -> list[ReceivedDelta]:  # type: ignore[no-untyped-def]
    kw.setdefault("peer", "hub-pearl")
    kw.setdefault("peer_may_forward", True)
    accepted, refused = check(envs, pki.verifier(), **kw)
    assert refused == [], [r.reason for r in refused]
    assert [a.envelope.body for a in accepted if not a.relayed] == [e.body for e in envs]
    return accepted


# -- 1. local writes -----------------------------------------------------------------------


def test_write_local_is_one_transaction(db_url: str, pki: PKI, authors: Authors, opened: list[Store]) -> None:
    s = open_store(db_url, opened, owner="province-44")
    seal = pki.sealer("province-44")
    a, b, c = authors.person("44", "11"), authors.person("44", "45"), authors.person("44", "44")
    ch1 = s.write_local(KIND, a["id_number"], upsert(a), operator="operator-44-admin", now_ms=T0, seal=seal)
    ch2 = s.write_local(KIND, b["id_number"], upsert(b), operator=None, now_ms=T0 + 1, seal=seal)
    a2 = validate_person({**a, "children": int(a["children"]) + 1}, today=TODAY)  # type: ignore[call-overload]
    ch3 = s.write_local(KIND, a["id_number"], upsert(a2), operator=None, now_ms=T0 + 2, seal=seal)
    ch4 = s.write_local(KIND, c["id_number"], upsert(c), operator=None, now_ms=T0 + 3, seal=seal)

    assert [ch.seq for ch in (ch1, ch2, ch3, ch4)] == [1, 2, 3, 4]
    assert [ch.op for ch in (ch1, ch2, ch3, ch4)] == ["create", "create", "update", "create"]
    rows = log_rows(s)
    assert [(r.origin, r.seq, r.record_id, r.op, r.via) for r in rows] == [
        ("province-44", 1, a["id_number"], "create", "local"),
        ("province-44", 2, b["id_number"], "create", "local"),
        ("province-44", 3, a["id_number"], "update", "local"),
        ("province-44", 4, c["id_number"], "create", "local"),
    ]
    assert [r.shared for r in rows] == [True, True, True, False]  # c never leaves province 44
    assert [e.seq for e in s.outbox(0)] == [1, 2, 3]
    assert s.last_seq() == 4
    # A page of the outbox says how far it looked: past the change that stays here.
    page, upto = s.outbox_page(0, 2)
    assert ([e.seq for e in page], upto) == ([1, 2], 2)
    page, upto = s.outbox_page(2, 2)
    assert ([e.seq for e in page], upto) == ([3], 4)
    assert s.outbox_page(4, 2) == ([], 4)

    # The record state and the logged change are the same thing.
    assert s.get(KIND, a["id_number"]) == ch3.state
    assert s.get(KIND, a["id_number"]).values() == a2  # type: ignore[union-attr]
    assert s.get(KIND, b["id_number"]) == ch2.state
    assert s.get(KIND, c["id_number"]) == ch4.state
    verifier = pki.verifier()
    history = s.history(KIND, a["id_number"])
    assert [e.seq for e in history] == [1, 3]
    for entry, ch in zip(history, (ch1, ch3), strict=True):
        assert delta_parse(entry.body, entry.openings) == ch.delta  # the values travel beside the body
        assert entry.body == ch.delta.to_body() and digest(entry.body).hex() == ch.id
        assert verifier.verify(entry.body, entry.seal) == "province-44"
    assert history[0].operator == "operator-44-admin"
    assert (ch1.delta.deps, ch3.delta.deps) == ((), (ch1.id,))  # the update is written on the create
    assert ch3.delta.values == {**a2, "_deleted": False}  # the author's own new values, nothing else

    # Failures part-way leave nothing behind.
    before = snapshot(s)
    d, e = authors.person("44", "31"), authors.person("44", "11")

    def failing_edit(current):  # type: ignore[no-untyped-def]
        raise Boom("operator cancelled")

    def failing_seal(bodies):  # type: ignore[no-untyped-def]
        assert len(bodies) == 1 and delta_parse(bodies[0], complete=False).seq == 5  # called with the real body
        raise Boom("signing key unavailable")

    with pytest.raises(Boom):
        s.write_local(KIND, d["id_number"], failing_edit, operator=None, now_ms=T0 + 10, seal=seal)
    with pytest.raises(Boom):
        s.write_local(KIND, d["id_number"], upsert(d), operator=None, now_ms=T0 + 11, seal=failing_seal)
    with pytest.raises(Boom):  # an update of an existing record
        s.write_local(KIND, a["id_number"], upsert(a), operator=None, now_ms=T0 + 12, seal=failing_seal)
    # The database failing on either table, whichever is written first: the other rolls back too.
    for table in ("records", "log"):
        with failing_writes(s, table) as attempts, pytest.raises(Boom):
            s.write_local(KIND, e["id_number"], upsert(e), operator=None, now_ms=T0 + 13, seal=seal)
        assert attempts == [table]
    assert snapshot(s) == before
    assert s.get(KIND, d["id_number"]) is None and s.get(KIND, e["id_number"]) is None
    assert s.history(KIND, d["id_number"]) == [] and s.history(KIND, e["id_number"]) == []
    assert s.get(KIND, a["id_number"]) == ch3.state

    # ... and the sequence stays gapless.
    ch5 = s.write_local(KIND, e["id_number"], upsert(e), operator=None, now_ms=T0 + 14, seal=seal)
    assert ch5.seq == 5
    assert [r.seq for r in log_rows(s)] == [1, 2, 3, 4, 5]
    assert s.get(KIND, e["id_number"]) == ch5.state


# -- 2. crash safety -------------------------------------------------------------------------


@dataclass
class _Run:
    proc: subprocess.Popen
    lines: list[str]
    reader: threading.Thread


def _start_writer(url: str, pki: PKI, seed: int) -> _Run:
    key, cert = pki.sign_paths("province-44")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.crash_writer", url, "province-44", str(key), str(cert), str(seed)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return _Run(proc, lines, reader)


def _kill_after(run: _Run, commits: int, timeout: float = 60.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    try:
        while len(run.lines) < commits:
            if run.proc.poll() is not None:
                assert run.proc.stderr is not None
                pytest.fail(f"writer exited with {run.proc.returncode}: {run.proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"writer committed only {len(run.lines)} changes in {timeout}s")
            time.sleep(0.002)
    finally:
        if run.proc.poll() is None:
            os.kill(run.proc.pid, signal.SIGKILL)  # no cleanup, no atexit, no rollback by the client
        run.proc.wait(timeout=30)
        run.reader.join(timeout=30)
        for stream in (run.proc.stdout, run.proc.stderr):
            if stream is not None:
                stream.close()
    assert run.proc.returncode == -signal.SIGKILL
    printed = []
    for line in run.lines:  # every line was printed after its write_local returned
        if not line.endswith("\n"):  # cut off by the kill: that commit is the one allowed unprinted one
            assert line is run.lines[-1]
            break
        seq, record_id = line.split()
        printed.append((int(seq), record_id))
    return printed


def test_sigkill_during_writes_keeps_every_commit_and_nothing_half_written(db_url: str, pki: PKI) -> None:
    printed: list[tuple[int, str]] = []
    verifier = pki.verifier()
    rng = random.Random(2026)
    top = 0
    for round_ in range(3):
        run = _start_writer(db_url, pki, seed=round_)
        now_printed = _kill_after(run, commits=rng.randint(15, 40))
        assert now_printed, "writer printed nothing"
        # A restarted writer continues right after the last commit.
        assert now_printed[0][0] == top + 1
        printed += now_printed

        s = Store.open(db_url, owner="province-44")
        try:
            rows = log_rows(s)
            seqs = [r.seq for r in rows]
            top = seqs[-1]
            assert seqs == list(range(1, top + 1)), "log sequence has gaps or is out of lsn order"
            assert {r.origin for r in rows} == {"province-44"}
            # Everything printed is there; at most the one write in flight at the kill committed unprinted.
            assert top - printed[-1][0] in (0, 1)
            by_seq = {r.seq: r for r in rows}
            for seq, record_id in printed:
                assert by_seq[seq].record_id == record_id
            # Every log row has its record, every record has its log rows, and the state is the
            # state its logged deltas make, with its last delta on top of the others (each local
            # write depends on the record's heads) and every value it wrote shown.
            last: dict[str, tuple] = {}
            for r in rows:
                last[r.record_id] = r  # rows are in lsn order
            assert record_ids(s) == set(last)
            for record_id, r in last.items():
                graph = s.record_graph(KIND, record_id)
                state = s.get(KIND, record_id)
                assert state == state_of(graph) and graph.heads() == (digest(bytes(r.body)).hex(),)
                written = delta_parse(bytes(r.body), bytes(r.openings)).values
                assert state is not None and not state.deleted
                assert {k: state.values().get(k) for k in written if k != "_deleted"} == {
                    k: v for k, v in written.items() if k != "_deleted"}
            for entry in s.read_log(0, limit=10_000)[0]:
                assert verifier.verify(entry.body, entry.seal) == "province-44"
            assert s.last_seq() == top
        finally:
            s.close()


# -- 3. idempotent apply -------------------------------------------------------------------


def test_ingest_is_idempotent_in_any_order(db_url: str, pki: PKI, authors: Authors, opened: list[Store],
                                           tmp_path: Path) -> None:
    envs = []
    first, env = authors.write("province-11", "11", "44")
    envs.append(env)
    for _ in range(3):
        envs.append(authors.write("province-11", "11", "44")[1])
    envs.append(authors.write("province-45", "45", "44")[1])
    # A later update of the first record, so order matters unless merge is order-insensitive.
    upd = validate_person({**first.state.values(), "children": 7}, today=TODAY)
    envs.append(authors.write("province-11", "11", "44", values=upd)[1])
    accepted = accept_all(pki, envs, for_province="44")
    n = len(accepted)

    s = open_store(db_url, opened, owner="province-44")
    res = s.ingest(accepted, [], via="hub-pearl", now_ms=T0)
    assert (res.applied, res.duplicates, res.quarantined, res.opened) == (n, 0, 0, [])
    before = snapshot(s)
    assert len(before[0]) == n and len(before[1]) == n - 1

    res = s.ingest(accepted, [], via="hub-pearl", now_ms=T0 + 1)
    assert (res.applied, res.duplicates, res.quarantined) == (0, n, 0)
    res = s.ingest(list(reversed(accepted)), [], via="hub-national", now_ms=T0 + 2)
    assert (res.applied, res.duplicates, res.quarantined) == (0, n, 0)
    mixed = [accepted[i] for i in (5, 0, 0, 3, 5, 1, 2, 4, 1)]
    res = s.ingest(mixed, [], via="hub-pearl", now_ms=T0 + 3)
    assert (res.applied, res.duplicates, res.quarantined) == (0, len(mixed), 0)
    assert snapshot(s) == before  # not a row added, not a byte changed (nor via / received_ms)

    # A replica that sees the same changes reordered and duplicated in one batch ends up equal.
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}", opened, owner="province-44")
    res = other.ingest(mixed, [], via="hub-pearl", now_ms=T0)
    assert (res.applied, res.duplicates, res.quarantined) == (n, len(mixed) - n, 0)
    assert list(other.iter_records(KIND)) == list(s.iter_records(KIND))
    assert s.get(KIND, first.record_id).values() == upd  # type: ignore[union-attr]
    # ... and equal to what the authors hold.
    for owner in ("province-11", "province-45"):
        for state in authors.store(owner).iter_records(KIND):
            assert s.get(KIND, state.record_id) == state


# -- 4. equivocation -------------------------------------------------------------------------


def test_equivocation_keeps_both_changes_merged_and_flags_the_origin(db_url: str, pki: PKI, authors: Authors,
                                                                     opened: list[Store], tmp_path: Path) -> None:
    # Node 11 restored from an old backup: a second store of the same origin reuses its sequence numbers.
    twin = open_store(f"sqlite:///{tmp_path / 'twin-11.db'}", opened, owner="province-11")
    a = authors.person("11", "44")
    ch1, env1 = authors.write("province-11", "11", "44", values=a)
    ch1b, env1b = authors.write("province-11", "11", "44", values={**a, "name": "王小明"}, store=twin)
    assert (ch1.seq, ch1b.seq, ch1.record_id) == (1, 1, ch1b.record_id) and env1.body != env1b.body
    ch2, env2 = authors.write("province-11", "11", "44")
    ch2b, env2b = authors.write("province-11", "11", "44", store=twin)  # seq 2, another record
    assert (ch2.seq, ch2b.seq) == (2, 2) and ch2.record_id != ch2b.record_id

    s = open_store(db_url, opened, owner="province-44")
    assert s.ingest(accept_all(pki, [env1]), [], via="hub-pearl", now_ms=T0).applied == 1
    assert s.equivocating() == {}
    res = s.ingest(accept_all(pki, [env1b]), [], via="hub-pearl", now_ms=T0 + 1)
    assert (res.applied, res.duplicates, res.quarantined, res.equivocations) == (1, 0, 0, [("province-11", 1)])
    # Within one batch too: both applied; a resend of either is a duplicate.
    res = s.ingest(accept_all(pki, [env2, env2b, env2]), [], via="hub-pearl", now_ms=T0 + 2)
    assert (res.applied, res.duplicates, res.quarantined, res.equivocations) == (2, 1, 0, [("province-11", 2)])
    res = s.ingest(accept_all(pki, [env1b, env1]), [], via="hub-pearl", now_ms=T0 + 3)
    assert (res.applied, res.duplicates, res.equivocations) == (0, 2, [])

    assert s.quarantined() == []
    assert s.equivocating() == {"province-11": {"seq": 1, "first_seen_ms": T0 + 1, "seqs": 2}}
    evidence = s.equivocation_evidence()
    assert [(e["origin"], e["seq"]) for e in evidence] == [("province-11", 1), ("province-11", 2)]
    bodies = {e.lsn: bytes(e.body) for e in log_rows(s)}
    for item, pair in zip(evidence, [(env1, env1b), (env2, env2b)]):
        held = {bodies[c["lsn"]] for c in item["changes"]}  # type: ignore[attr-defined]
        assert held == {pair[0].body, pair[1].body}
    # Both in the log, and both merged: the name written twice under one clock is a conflict.
    assert sorted((r.origin, r.seq, bytes(r.body)) for r in log_rows(s)) == sorted([
        ("province-11", 1, env1.body), ("province-11", 1, env1b.body),
        ("province-11", 2, env2.body), ("province-11", 2, env2b.body)])
    merged = s.get(KIND, ch1.record_id)
    assert merged == ch1.state.merge(ch1b.state)
    assert "name" in merged.conflicts()  # type: ignore[union-attr]
    assert record_ids(s) == {ch1.record_id, ch2.record_id, ch2b.record_id}
    # Either order gives the same record (the state is a function of the deltas held).
    other = open_store(f"sqlite:///{tmp_path / 'other-44.db'}", opened, owner="province-44")
    other.ingest(accept_all(pki, [env1b, env2b]), [], via="hub-pearl", now_ms=T0)
    other.ingest(accept_all(pki, [env2, env1]), [], via="hub-pearl", now_ms=T0 + 1)
    assert list(other.iter_records(KIND)) == list(s.iter_records(KIND))


def test_what_a_hub_quarantined_of_ours_is_kept_and_summed(db_url: str, opened: list[Store]) -> None:
    s = open_store(db_url, opened, owner="province-45")
    assert s.upstream_quarantined() == {"changes": 0, "ranges": [], "last_reason": None, "last_hub": None,
                                        "last_ms": None}
    s.note_upstream_quarantine("hub-pearl", [7, 9, 8], 3, "unknown author", T0)
    s.note_upstream_quarantine("hub-national", [], 2, "not said (an older hub)", T0 + 5)  # an older hub names none
    s.note_upstream_quarantine("hub-pearl", [12], 1, "malformed" + "x" * 100, T0 + 9)
    got = s.upstream_quarantined()
    assert got == {"changes": 6, "ranges": [[7, 9], [12, 12]], "last_reason": ("malformed" + "x" * 100)[:64],
                   "last_hub": "hub-pearl", "last_ms": T0 + 9}


# -- 5. quarantine -----------------------------------------------------------------------------


@dataclass
class Case:
    bad: list[Envelope]
    reasons: list[str]  # expected reason prefix (or fragment after "|") per bad envelope
    check_kw: dict
    verifier_exclude: tuple[str, ...] = ()
    by_store: bool = False  # signed and well-formed: intake passes it, the record's history refuses it
    charged: str | None = None  # whose quarantine share each takes, where the test says


def _tamper(env: Envelope, edit: Callable[[dict], None]) -> Envelope:
    obj = canonical.loads(env.body)
    assert isinstance(obj, dict)
    edit(obj)
    return Envelope(canonical.dumps(obj), env.seal, env.openings)


def _case(name: str, authors: Authors, pki: PKI, tmp_path: Path, opened: list[Store]) -> Case:
    node = dict(peer="hub-pearl", peer_may_forward=True, for_province="44")
    if name == "bad signature":  # a hub altered a value, and its commitment in the body, after signing
        ch, env = authors.write("province-11", "11", "44")
        salt, was = ch.delta.salts["name"], ch.delta.commitments["name"].encode()
        assert env.body.count(was) == 1
        body = env.body.replace(was, commitment("name", bytes.fromhex(salt), "李四").encode())
        openings = canonical.loads(env.openings)
        assert isinstance(openings, dict)
        bad = Envelope(body, env.seal, canonical.dumps({**openings, "name": [salt, "李四"]}))
        assert delta_parse(bad.body, bad.openings).values["name"] == "李四"  # still a well-formed delta
        return Case([bad], ["bad signature"], node)
    if name == "value altered beside the signature":  # the body left as signed, the opening changed
        ch, env = authors.write("province-11", "11", "44")
        openings = canonical.loads(env.openings)
        assert isinstance(openings, dict)
        bad = Envelope(env.body, env.seal, canonical.dumps({**openings, "name": [ch.delta.salts["name"], "李四"]}))
        return Case([bad], ["malformed|openings.name: does not match its commitment"], node)
    if name == "unknown author: foreign CA":
        with pytest.raises(UnknownAuthor):  # the keyring does not even admit it
            pki.keyring().add_certificate(pki.foreign_signer().cert_der, now=datetime.now(timezone.utc))
        rogue = open_store(f"sqlite:///{tmp_path / 'rogue-44.db'}", opened, owner="province-44")
        foreign = pki.foreign_signer()
        _, env = authors.write("province-44", "44", "11", store=rogue, sealer=lambda b: foreign.seal_batch(b))
        return Case([env], ["unknown author"], dict(peer="hub-pearl", peer_may_forward=True))
    if name == "unknown author: key never added":
        _, env = authors.write("province-45", "45", "44")
        return Case([env], ["unknown author"], node, verifier_exclude=("province-45",))
    if name == "unauthorised writer":  # 31 signs, with its own real key, a record involving only 11 and 44
        values = {**authors.person("11", "44"), "_deleted": False}
        forged = Delta(KIND, str(values["id_number"]), "province-31", 0, 1, Timestamp(authors.now(), 0, "province-31"),
                       "create", None, (), (), values, frozenset({"11", "44"}), {})
        body = forged.to_body()
        (seal,) = pki.sealer("province-31")([body])
        return Case([Envelope(body, seal, forged.openings())],
                    ["unauthorised writer|a create by province-31 must involve its author"], node,
                    by_store=True, charged="province-31")
    if name == "signed by another province":  # 11's delta re-sealed by 45
        _, env = authors.write("province-11", "11", "44")
        forged_env = Envelope(env.body, pki.signer("province-45").seal_batch([env.body])[0], env.openings)
        return Case([forged_env], ["unauthorised writer|signed by province-45"], node)
    if name == "node pushes someone else's change":
        _, env = authors.write("province-45", "45", "11")
        return Case([env], ["malformed|may only push deltas it authored"],
                    dict(peer="province-11", peer_may_forward=False))
    if name == "not routed to this node":
        _, env = authors.write("province-45", "45", "31")
        return Case([env], ["malformed|not routed to province 44"], node)
    if name == "malformed body":
        _, env = authors.write("province-11", "11", "44")
        cut = Envelope(env.body[:40], env.seal, env.openings)
        garbage = Envelope(b"\xff\xfe not json \x00", env.seal, env.openings)
        no_seq = canonical.dumps({k: v for k, v in canonical.loads(env.body).items() if k != "seq"})  # type: ignore[union-attr]
        signed_no_seq = Envelope(no_seq, pki.signer("province-11").seal_batch([no_seq])[0], env.openings)
        return Case([cut, garbage, signed_no_seq], ["malformed", "malformed", "malformed|seq: must be an integer"],
                    node)
    # Peer-controlled text the store has to keep (quarantine) or refuse before the log.
    if name == "forged origin, oversized":
        _, env = authors.write("province-11", "11", "44")
        return Case([_tamper(env, lambda o: o.__setitem__("origin", "province-" + "1" * 200))],
                    ["malformed|origin: identity: unknown province code"], node)  # format before signature
    if name == "forged origin with NUL":
        _, env = authors.write("province-11", "11", "44")
        return Case([_tamper(env, lambda o: o.__setitem__("origin", "province-45\x00"))],
                    ["malformed|origin: identity: unknown province code"], dict(peer="province-11", peer_may_forward=False))
    if name == "record id with NUL":  # validly signed by an authorised author
        p = authors.person("11", "44")
        _, env = authors.write("province-11", "11", "44", values=p, record_id=f"{p['id_number']}\x00")
        return Case([env], ["malformed|id"], node)
    if name == "record id with lone surrogate":  # hand-made bytes, validly signed by an authorised author
        ch, env = authors.write("province-11", "11", "44")
        body = env.body.replace(f'"id":"{ch.record_id}"'.encode(), f'"id":"{ch.record_id[:-1]}\\ud800"'.encode())
        assert body != env.body and delta_parse(body, env.openings).record_id.endswith("\ud800")
        return Case([Envelope(body, pki.signer("province-11").seal_batch([body])[0], env.openings)],
                    ["malformed|id"], node)
    if name == "forged origin, lone surrogate":
        _, env = authors.write("province-11", "11", "44")
        body = env.body.replace(b'"origin":"province-11"', b'"origin":"province-\\udc80"')
        assert body != env.body
        return Case([Envelope(body, env.seal, env.openings)], ["malformed|origin: identity: unknown province code"],
                    dict(peer="province-11", peer_may_forward=False))
    if name == "oversized operator":  # validly signed by an authorised author
        _, env = authors.write("province-11", "11", "44", operator="operator-44-" + "a" * 120)
        return Case([env], ["malformed|operator"], node)
    raise AssertionError(name)


CASES = [
    "bad signature",
    "value altered beside the signature",
    "unknown author: foreign CA",
    "unknown author: key never added",
    "unauthorised writer",
    "signed by another province",
    "node pushes someone else's change",
    "not routed to this node",
    "malformed body",
    "forged origin, oversized",
    "forged origin with NUL",
    "record id with NUL",
    "record id with lone surrogate",
    "forged origin, lone surrogate",
    "oversized operator",
]


@pytest.mark.parametrize("case", CASES)
def test_refused_changes_are_quarantined_and_the_rest_of_the_batch_applies(
        case: str, db_url: str, pki: PKI, authors: Authors, opened: list[Store], tmp_path: Path) -> None:
    good = [authors.write("province-11", "11", "44") for _ in range(2)]
    c = _case(case, authors, pki, tmp_path, opened)
    good.append(authors.write("province-11", "11", "44"))
    batch = [good[0][1], *c.bad[:1], good[1][1], *c.bad[1:], good[2][1]]

    accepted, refused = check(batch, pki.verifier(exclude=c.verifier_exclude), **c.check_kw)
    assert [a.envelope for a in accepted] == [env for env in batch if c.by_store or env not in c.bad]
    assert [r.envelope for r in refused] == ([] if c.by_store else c.bad)
    # What each refusal names: intake's from the bytes it could read, the store's from the signed delta.
    named = ([(a.delta.origin, a.delta.seq, a.delta.kind, a.delta.record_id) for a in accepted
              if a.envelope in c.bad] if c.by_store else [(r.origin, r.seq, r.kind, r.record_id) for r in refused])

    s = open_store(db_url, opened, owner="province-44")
    res = s.ingest(accepted, refused, via="hub-pearl", now_ms=T0, cursor=("pull:hub-pearl", 9))
    assert (res.applied, res.duplicates, res.quarantined) == (3, 0, len(c.bad))
    assert s.cursor("pull:hub-pearl") == 9

    # The good changes are in; nothing of the bad ones reached the log or the records.
    assert log_digests(s) == {digest(env.body) for _, env in good}
    assert record_ids(s) == {ch.record_id for ch, _ in good}
    for ch, _ in good:
        assert s.get(KIND, ch.record_id) == ch.state

    # The quarantine keeps each refused change's exact bytes and an operator-readable reason.
    q = sorted(s.quarantined(), key=lambda e: e.id)
    assert len(q) == len(c.bad) == s.count_quarantined()
    for entry, env, (origin, seq, kind, record_id), want in zip(q, c.bad, named, c.reasons, strict=True):
        prefix, _, fragment = want.partition("|")
        assert entry.reason.startswith(prefix + ":"), entry.reason
        assert fragment in entry.reason, entry.reason
        assert entry.peer == "hub-pearl"
        assert c.charged is None or entry.charged == c.charged
        assert s.quarantine_body(entry.id) == env.body
        assert (entry.seq, entry.kind) == (seq, kind)
        for kept, got in ((entry.origin, origin), (entry.record_id, record_id)):
            if got is None or _clean(got):
                assert kept == got
            else:  # peer text the database cannot hold as is: kept recognisably, never failing the batch
                assert kept is not None and 0 < len(kept) <= 64 and _clean(kept) and kept[:9] == got[:9]


def _clean(text: str) -> bool:
    return "\x00" not in text and len(text) <= 64 and text.encode("utf-8", "replace").decode() == text


# -- 6. cursors --------------------------------------------------------------------------------


def test_cursor_moves_atomically_with_ingest(db_url: str, pki: PKI, authors: Authors, opened: list[Store]) -> None:
    envs = [authors.write("province-11", "11", "44")[1] for _ in range(4)]
    accepted = accept_all(pki, envs)
    _, junk = check([Envelope(b"{}", envs[0].seal)], pki.verifier(), peer="hub-pearl", peer_may_forward=True)
    assert len(junk) == 1

    s = open_store(db_url, opened, owner="province-44")
    assert s.cursor("pull:hub-pearl") == 0
    s.set_cursor("push:hub-pearl", 7, T0)

    s.ingest(accepted[:2], [], via="hub-pearl", now_ms=T0 + 1, cursor=("pull:hub-pearl", 42))
    assert s.cursor("pull:hub-pearl") == 42
    assert s.cursors("pull:") == {"pull:hub-pearl": (42, T0 + 1)}
    # Duplicates and refusals still move it (the batch was handled).
    res = s.ingest(accepted[:2], junk, via="hub-pearl", now_ms=T0 + 2, cursor=("pull:hub-pearl", 43))
    assert (res.applied, res.duplicates, res.quarantined) == (0, 2, 1)
    assert s.cursor("pull:hub-pearl") == 43

    # A batch that fails half-way moves nothing: no cursor, no log, no records, no quarantine,
    # whichever write fails (each of these tables is written after at least one other).
    before = snapshot(s)
    for table in ("quarantine", "log", "records", "cursors"):
        with failing_writes(s, table) as attempts, pytest.raises(Boom):
            s.ingest(accepted[2:], junk, via="hub-pearl", now_ms=T0 + 3, cursor=("pull:hub-pearl", 99))
        assert attempts, f"ingest never wrote {table}"
        assert snapshot(s) == before, table
        assert s.cursors() == {"pull:hub-pearl": (43, T0 + 2), "push:hub-pearl": (7, T0)}, table

    res = s.ingest(accepted[2:], [], via="hub-pearl", now_ms=T0 + 4, cursor=("pull:hub-pearl", 99))
    assert res.applied == 2
    assert s.cursor("pull:hub-pearl") == 99 and s.cursor("push:hub-pearl") == 7
    assert len(log_rows(s)) == 4


def _stored_cursors(s: Store) -> dict[str, int]:
    """What a fresh reader of the database sees (no process memory)."""
    from sqlalchemy import select

    from store.schema import cursors

    with s.engine.connect() as conn:
        return {name: value for name, value in conn.execute(select(cursors.c.name, cursors.c.value))}


def test_noted_acks_ride_with_the_next_transaction_or_the_flush(db_url: str, pki: PKI, authors: Authors,
                                                                 opened: list[Store]) -> None:
    """runtime.acks.AckBook over a real store: noted acks are written by ``Store.ingest(acks=...)``
    in the batch's transaction or by ``Store.set_cursors``; a failed write keeps them noted."""
    from runtime.acks import AckBook

    envs = [authors.write("province-11", "11", "44")[1] for _ in range(2)]
    accepted = accept_all(pki, envs)
    s = open_store(db_url, opened, owner="hub-pearl", index_routes=True, hold_records=False)
    book = AckBook(s, flush_s=3600)  # no background flush here: this test flushes by hand

    def ingest(batch: list[ReceivedDelta], now: int, cursor: tuple[str, int]) -> IngestResult:  # as Replica.ingest_batch
        with book.riding() as acks:
            return s.ingest(batch, [], via="hub-national", now_ms=now, cursor=cursor, acks=acks)

    book.note("out:province-44", 5, T0)
    assert book.cursor("out:province-44") == 5  # this process sees it at once
    assert book.cursors("out:") == {"out:province-44": (5, T0)}
    assert s.cursors("out:") == {}  # the store holds only what is written
    first = accepted[0].delta
    assert ingest(accepted[:1], T0 + 1, ("in:hub-national", 1)).arrived == [(first.origin, first.at.wall_ms)]
    assert _stored_cursors(s) == {"in:hub-national": 1, "out:province-44": 5}  # written with the batch

    # A failed batch writes nothing, the ack it carried included, which stays noted for the next write.
    book.note("out:province-44", 9, T0 + 2)
    with failing_writes(s, "log"), pytest.raises(Boom):
        ingest(accepted[1:], T0 + 3, ("in:hub-national", 2))
    assert _stored_cursors(s)["out:province-44"] == 5
    assert book.cursor("out:province-44") == 9
    with failing_writes(s, "cursors"), pytest.raises(Boom):
        book.flush()  # a flush that fails (locked, full) keeps it too
    book.flush()
    assert _stored_cursors(s)["out:province-44"] == 9

    # With no traffic the flush writes it; a cursor set outright supersedes a noted ack.
    book.note("out:province-44", 11, T0 + 4)
    book.flush()
    assert _stored_cursors(s)["out:province-44"] == 11
    book.note("out:province-45", 3, T0 + 5)
    book.set("out:province-45", 2, T0 + 6)
    assert book.cursor("out:province-45") == 2
    book.note("out:province-44", 12, T0 + 7)
    book.close()  # close flushes
    s.close()
    again = open_store(db_url, opened, owner="hub-pearl", index_routes=True, hold_records=False)
    assert again.cursors("out:") == {"out:province-44": (12, T0 + 7), "out:province-45": (2, T0 + 6)}


def test_noted_acks_are_flushed_within_the_interval(db_url: str, opened: list[Store]) -> None:
    """With no batch to ride along with, the AckBook's own thread writes a noted ack within its
    flush interval (passed in, not a module constant)."""
    from runtime.acks import AckBook

    s = open_store(db_url, opened, owner="hub-pearl", index_routes=True, hold_records=False)
    book = AckBook(s, flush_s=0.05)
    try:
        book.note("out:province-44", 7, T0)
        deadline = time.monotonic() + 10
        while _stored_cursors(s).get("out:province-44") != 7:
            assert time.monotonic() < deadline, "the noted ack was never flushed"
            time.sleep(0.02)
        assert s.cursors("out:") == {"out:province-44": (7, T0)}
    finally:
        book.close()
    with pytest.raises(ValueError, match="flush_s"):
        AckBook(s, flush_s=0)


# -- 7. the hub log --------------------------------------------------------------------------------


def _drain(hub: Store, after: int, flt: Filter | None, limit: int, want: list[LogEntry],
           **kw) -> tuple[list[LogEntry], int]:  # type: ignore[no-untyped-def]
    """Read page by page like a subscriber; check ``pending`` before every page."""
    got: list[LogEntry] = []
    pos = after
    for _ in range(10_000):
        remaining = want[len(got):]
        assert hub.pending(pos, flt=flt, **kw) == (
            len(remaining), min((e.received_ms for e in remaining), default=None))
        entries, nxt = hub.read_log(pos, flt=flt, limit=limit, **kw)
        assert len(entries) <= limit
        assert all(pos < e.lsn <= nxt for e in entries)
        got += entries
        if not entries and nxt == pos:
            return got, pos
        assert nxt > pos
        pos = nxt
    raise AssertionError("read_log never finished")


@pytest.mark.parametrize("window", [None, 2], ids=["default-window", "scan-window-2"])
def test_hub_log_routes_filters_and_pages_without_skipping(db_url: str, pki: PKI, authors: Authors,
                                                          opened: list[Store], window: int | None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    hub = open_store(db_url, opened, owner="hub-pearl", index_routes=True, hold_records=False)
    clock = iter(range(T0, T0 + 10_000))

    def push(owner: str, household: str, residence: str, n: int = 1) -> None:
        envs = [authors.write(owner, household, residence)[1] for _ in range(n)]
        accepted, refused = check(envs, pki.verifier(), peer=owner, peer_may_forward=False)
        assert refused == []
        assert hub.ingest(accepted, [], via=owner, now_ms=next(clock)).applied == n

    def from_national(owner: str, household: str, residence: str) -> None:
        env = authors.write(owner, household, residence)[1]
        accepted, refused = check([env], pki.verifier(), peer="hub-national", peer_may_forward=True)
        assert refused == []
        assert hub.ingest(accepted, [], via="hub-national", now_ms=next(clock)).applied == 1

    push("province-11", "11", "44", 2)
    push("province-44", "44", "45")
    from_national("province-31", "31", "11")
    push("province-45", "45", "31")
    push("province-11", "11", "45")
    from_national("province-31", "31", "44")
    push("province-44", "44", "11")
    push("province-45", "45", "44", 2)
    push("province-44", "44", "44")  # intra-province: routed to 44 only (a node would not push it)

    everything, top = hub.read_log(0, limit=1000)
    assert len(everything) == 11 and top == hub.last_lsn() == everything[-1].lsn
    assert [e.lsn for e in everything] == sorted({e.lsn for e in everything})
    for e in everything:
        assert e.routes == delta_parse(e.body, e.openings).routes
    assert hub.count_records() == 0 and record_ids(hub) == set()  # a hub holds no records

    node44 = Filter(frozenset({"44"}), not_origin="province-44")
    region = Filter(frozenset({"44", "45"}), not_via="hub-national")
    only31 = Filter(frozenset({"31"}))
    expected = {f: [e for e in everything if f.admits(e.routes, e.origin, e.via)] for f in (node44, region, only31)}
    # Spelled out, so the oracle above is not the only witness.
    assert [(e.origin, sorted(e.routes)) for e in expected[node44]] == [
        ("province-11", ["11", "44"]), ("province-11", ["11", "44"]), ("province-31", ["31", "44"]),
        ("province-45", ["44", "45"]), ("province-45", ["44", "45"])]
    assert {e.via for e in expected[region]} == {"province-11", "province-44", "province-45"}
    assert len(expected[region]) == 9
    assert [e.origin for e in expected[only31]] == ["province-31", "province-45", "province-31"]

    if window is not None:  # reads that look only 2 lsns ahead: empty pages in between, nothing skipped
        monkeypatch.setattr(changelog, "SCAN_WINDOW", window)
    for flt, want in expected.items():
        for limit in (1, 2, 3, 500):
            got, pos = _drain(hub, 0, flt, limit, want)
            assert [e.lsn for e in got] == [e.lsn for e in want], (flt, limit)
            assert pos == top
    not_national = [e for e in everything if e.via != "hub-national"]
    assert len(not_national) == 9
    got, _ = _drain(hub, 0, None, 3, not_national, not_via="hub-national")
    assert got == not_national
    monkeypatch.undo()

    # A subscriber stopped part-way resumes from the position it was given: no skip, no repeat.
    first, pos = hub.read_log(0, flt=node44, limit=2)
    assert [e.lsn for e in first] == [e.lsn for e in expected[node44][:2]]
    push("province-11", "11", "44")
    push("province-45", "45", "31")  # not for 44
    push("province-44", "44", "45")  # 44's own
    from_national("province-31", "31", "44")
    admitted = [e for e in hub.read_log(0, limit=1000)[0] if node44.admits(e.routes, e.origin, e.via)]
    assert len(admitted) == 7 and admitted[:5] == expected[node44]
    assert hub.pending(pos, flt=node44)[0] == 3 + 2
    rest, end = _drain(hub, pos, node44, 2, admitted[2:])
    seen = first + rest
    assert seen == admitted  # in order, nothing skipped, nothing twice
    assert end == hub.last_lsn() and hub.pending(end, flt=node44) == (0, None)

    # What the hub hands out is the authors' exact bytes: a node verifies and applies all of it.
    accepted, refused = check([e.envelope for e in seen], pki.verifier(), peer="hub-pearl",
                              peer_may_forward=True, for_province="44")
    assert refused == [] and len(accepted) == 7


# -- 8. schema migrations ------------------------------------------------------------------------


def test_migrations_create_the_schema_and_keep_data(db_url: str, pki: PKI, authors: Authors,
                                                    opened: list[Store]) -> None:
    engine = open_engine(db_url)
    try:
        assert current_revision(engine) is None
        assert sa.inspect(engine).get_table_names() == []
        migrate(engine)
        assert current_revision(engine) == HEAD
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        assert ScriptDirectory.from_config(cfg).get_heads() == [HEAD]

        insp = sa.inspect(engine)
        assert set(insp.get_table_names()) == set(metadata.tables) | {"alembic_version"}
        for name, table in metadata.tables.items():
            assert [c["name"] for c in insp.get_columns(name)] == [c.name for c in table.columns], name
            assert set(insp.get_pk_constraint(name)["constrained_columns"]) == {c.name for c in table.primary_key}
        with engine.connect() as conn:  # the migrated database is exactly store.schema
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        migrate(engine)  # again: a no-op
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()

    s = Store.open(db_url, owner="province-44")
    try:
        ch1, _ = authors.write("province-44", "44", "11", store=s)
        ch2, _ = authors.write("province-44", "44", "45", store=s)
        env = authors.write("province-11", "11", "44")[1]
        s.ingest(accept_all(pki, [env]), [], via="hub-pearl", now_ms=T0, cursor=("pull:hub-pearl", 5))
        signer = pki.signer("province-11")
        s.save_key(signer.key_id, signer.identity, signer.cert_der, T0)
        # The database enforces at-most-once per (origin, seq), whatever the code above it does.
        row = dict(log_rows(s)[0]._mapping)
        row.pop("lsn")
        with pytest.raises(sa.exc.IntegrityError), s.engine.begin() as conn:
            conn.execute(log.insert().values(**row))
        before = snapshot(s), s.cursors(), s.load_keys()
    finally:
        s.close()

    s = Store.open(db_url, owner="province-44")
    try:
        assert (snapshot(s), s.cursors(), s.load_keys()) == before
        assert s.get(KIND, ch1.record_id) == ch1.state and s.get(KIND, ch2.record_id) == ch2.state
        assert authors.write("province-44", "44", "11", store=s)[0].seq == 3
        assert current_revision(s.engine) == HEAD
    finally:
        s.close()

    with pytest.raises(LocalError, match="province-44"):
        Store.open(db_url, owner="province-11")
    s = Store.open(db_url, owner="province-44")  # still ours, untouched
    try:
        assert s.last_seq() == 3 and len(log_rows(s)) == 4
        with s.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT value FROM meta WHERE key = 'owner'")).scalar() == "province-44"
    finally:
        s.close()


# -- 9. iter_records ------------------------------------------------------------------------------------


def test_iter_records_pages_through_everything_once(db_url: str, pki: PKI, authors: Authors,
                                                   opened: list[Store]) -> None:
    s = open_store(db_url, opened, owner="province-44")
    changes = [authors.write("province-44", "44", random.Random(i).choice(["11", "44", "45"]), store=s)[0]
               for i in range(8)]
    gone = changes[3]
    deleted = s.write_local(KIND, gone.record_id, lambda current: ("delete", {}), operator=None,
                            now_ms=authors.now(), seal=pki.sealer("province-44"))
    assert deleted.state.deleted and s.get(KIND, gone.record_id).deleted  # type: ignore[union-attr]
    live = sorted(ch.record_id for ch in changes if ch is not gone)
    everyone = sorted(ch.record_id for ch in changes)
    assert len(set(everyone)) == 8

    for page in (1, 3, 7, 8, 500):
        got = [r.record_id for r in s.iter_records(KIND, page=page)]
        assert got == live, page
        assert [r.record_id for r in s.iter_records(KIND, page=page, include_deleted=True)] == everyone
    states = {r.record_id: r for r in s.iter_records(KIND, page=3)}
    for ch in changes:
        if ch is not gone:
            assert states[ch.record_id] == ch.state
    assert list(s.iter_records(KIND, page=3, conflicted_only=True)) == []
    assert s.count_records() == 7


def test_iter_records_after_an_id_or_a_prefix(db_url: str, pki: PKI, authors: Authors, opened: list[Store]) -> None:
    """``after`` starts past an id (paging), and past a prefix: what the CLI uses to page and to
    find the records whose id starts with a prefix."""
    s = open_store(db_url, opened, owner="province-44")
    ids = sorted(authors.write("province-44", "44", "44", store=s)[0].record_id for _ in range(6))
    for page in (1, 2, 500):
        assert [r.record_id for r in s.iter_records(KIND, page=page, after=ids[2])] == ids[3:]
    assert [r.record_id for r in s.iter_records(KIND, after=ids[-1])] == []
    prefix = ids[4][:6]
    after_prefix = [r.record_id for r in s.iter_records(KIND, after=prefix)]
    assert ids[4] in after_prefix and after_prefix == [i for i in ids if i > prefix]
