"""A node whose store fails under it: the SQLite file locked by another process
for longer than the busy timeout, and the disk full.

The contract (runtime/interceptor.py, runtime/link.py): an operator's write is
refused with UNAVAILABLE "the store is unavailable ...; nothing was written";
a sync session that hits the store error ends, the outage is logged once (no
traceback) and shown under ``store`` in status, and the link retries the same hub
with backoff (no fallback, no hub blamed); the node keeps running and, once the store is usable again, everything
arrives, nothing lost, nothing applied twice, and the database is sound.

The busy timeout is 30 s by default; the lock test gives node 44 a 1 s one
through its database URL (``sqlite:///...node.db?timeout=1``) so that holding
the lock a few seconds is enough. The disk-full test puts node 44's database
on a small tmpfs and fills it (skipped where mounting is not permitted).
"""

from __future__ import annotations

import errno
import os
import queue
import random
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from runtime.config import load_any
from core.errors import StoreUnavailable
from tests.support.launcher import Federation
from runtime.transport import secure_channel
from runtime.intake import check
from store.store import Store
from tests.integration.conftest import Fed, small_federation, eventually, person
from tests.support.pki import build_pki
from yipanqi.v2 import federation_pb2 as fpb
from yipanqi.v2 import federation_pb2_grpc as fpb_grpc

PROVINCES = ["11", "44", "45"]
N11, N44, N45 = "province-11", "province-44", "province-45"
NATIONAL, BOHAI, PEARL = "hub-national", "hub-bohai", "hub-pearl"
SLOW = 60  # generous: the machine is shared
BUSY_S = 1


def node_db(fed: Fed) -> Path:
    return fed.root / "nodes" / "44" / "node.db"


def log_text(fed: Fed, identity: str) -> str:
    return fed.fed.log_path(identity).read_text(errors="replace")


def integrity(db: Path) -> str:
    with closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def once(fed: Fed, identity: str, pid: str) -> list[tuple[str, int]]:
    keys = [(r["origin"], r["seq"]) for r in fed.history(identity, pid)]
    assert len(keys) == len(set(keys)), f"{identity} applied a change of {pid} twice: {keys}"
    return keys


def refused_unavailable(call: Callable[[], Any], *words: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    assert "the store is unavailable" in details and "nothing was written" in details, details
    for word in words:
        assert word in details, details
    return err.value


def reported_down(fed: Fed, identity: str, word: str) -> dict[str, Any]:
    """The node's status names the outage of its own store, and blames no hub for it."""
    def down() -> dict[str, Any]:
        st = fed.status(identity)
        store, hub = st["store"], st["hub"]
        assert not hub["fallback"], f"{identity} fell back because of its own store: {hub}"
        assert not (hub["last_error"] or "").startswith("hub-"), f"{identity} blames a hub: {hub}"
        return store if not store["ok"] and word in (store["last_error"] or "") else {}
    return eventually(down, SLOW, interval=0.1, message=lambda: f"{identity} status: {fed.status(identity)}")


@contextmanager
def exclusive_lock(db: Path, timeout: float = 30) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock on ``db`` (what another process, say a careless backup, would do)."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("BEGIN EXCLUSIVE")
            break
        except sqlite3.OperationalError:  # the node is writing right now
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


# -- the database locked -------------------------------------------------------------------------


def test_locked_store_refuses_writes_pauses_sync_and_catches_up_after(tmp_path: Path, rng: random.Random) -> None:
    def short_busy_timeout(f: Federation) -> None:
        db = f.root.resolve() / "nodes" / "44" / "node.db"
        f.set_database(N44, f"sqlite:///{db}?timeout={BUSY_S}")

    with small_federation(tmp_path / "fed", PROVINCES, short_busy_timeout) as fed:
        base = fed.write(N45, "create", person(rng, household="45", residence="44"))
        fed.arrives(N44, base["person_id"], base, timeout=SLOW)
        fed.quiet(SLOW)
        db = node_db(fed)
        seq_before = fed.status(N44)["last_seq"]
        fields = person(rng, household="44", residence="45")
        attempted = fed.fed.person_key(fields["id_number"])

        with exclusive_lock(db):
            held = time.monotonic()
            assert fed.status(N44)["last_seq"] == seq_before  # reads still work (WAL)
            assert fed.get(N44, base["person_id"]) == base
            started = time.monotonic()
            refused_unavailable(lambda: fed.write(N44, "create", fields, record_id=attempted), "locked")
            assert time.monotonic() - started < 15, "the write hung instead of failing after the busy timeout"

            # 45 keeps writing for 44 while 44's store is locked.
            sent = {base["person_id"]: fed.write(N45, "update", {"children": 2}, base["person_id"])}
            for _ in range(4):
                rec = fed.write(N45, "create", person(rng, household="45", residence="44"))
                sent[rec["person_id"]] = rec
            reported_down(fed, N44, "locked")
            eventually(lambda: "store unavailable: database is locked (sync paused" in log_text(fed, N44),
                       SLOW, message="44's log does not report the locked store")
            assert fed.fed.running(N44)
            assert fed.status(N44)["last_seq"] == seq_before
            assert all(fed.get(N44, pid) is None for pid in sent if pid != base["person_id"])
            assert time.monotonic() - held < 45

        # Released: everything arrives, once; the refused write left nothing behind.
        for pid, rec in sent.items():
            fed.arrives(N44, pid, rec, timeout=SLOW)
        text = log_text(fed, N44)
        assert text.count("store unavailable:") == 1, text  # once per outage, not per failed call
        assert "Traceback" not in text and "unavailable: store" not in text, text
        eventually(lambda: fed.status(N44)["store"]["ok"], SLOW, message="44's store never reported ok again")
        retry = fed.write(N44, "create", fields, record_id=attempted)  # "already exists" if half-written
        assert retry["person_id"] == attempted
        assert [(o, s) for o, s in once(fed, N44, attempted)] == [(N44, seq_before + 1)]
        fed.arrives(N45, attempted, retry, timeout=SLOW)
        fed.quiet(SLOW)
        for pid in sent:
            assert once(fed, N44, pid) == once(fed, N45, pid)
        st = fed.status(N44)
        assert st["origins"][N45]["last_seq"] == fed.status(N45)["last_seq"]
        assert st["quarantined"] == 0 and fed.quarantine(PEARL) == []
        assert fed.fed.running(N44)
        assert integrity(db) == "ok"


def test_store_under_a_lock_fails_fast_and_writes_nothing(tmp_path: Path) -> None:
    """The same at store level, in process: a write or an ingest that cannot get the lock within
    the busy timeout raises StoreUnavailable (what the interceptor and the link map) and leaves
    no trace: no record, no log row, no sequence number used, the pull cursor where it was."""
    pki = build_pki(tmp_path / "pki")
    db = tmp_path / "store.db"
    author = Store.open(f"sqlite:///{tmp_path / 'author.db'}", owner=N45)
    store = Store.open(f"sqlite:///{db}?timeout=0.3", owner=N44)
    try:
        rng = random.Random(4)
        ch = author.write_local("person", str(uuid.uuid4()),
                                lambda cur: ("create", person(rng, household="45", residence="44")),
                                operator=None, now_ms=1_000, seal=pki.sealer(N45))
        (entry,) = author.history("person", ch.record_id)
        accepted, refused = check([entry.envelope], pki.verifier(), peer=PEARL, peer_may_forward=True,
                                  for_province="44")
        assert refused == [] and len(accepted) == 1

        def snapshot() -> tuple:
            with store.engine.connect() as conn:
                return tuple(conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar()
                             for t in ("records", "log", "cursors", "quarantine"))

        before = snapshot()
        with exclusive_lock(db):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="locked"):
                store.write_local("person", str(uuid.uuid4()),
                                  lambda cur: ("create", person(rng, household="44", residence="45")),
                                  operator=None, now_ms=2_000, seal=pki.sealer(N44))
            with pytest.raises(StoreUnavailable, match="locked"):
                store.ingest(accepted, [], via=PEARL, now_ms=2_000, cursor=("pull:hub-pearl", 7))
            assert time.monotonic() - started < 10
        assert snapshot() == before
        assert store.last_seq() == 0 and store.cursor("pull:hub-pearl") == 0
        # Usable again once the lock is gone.
        assert store.ingest(accepted, [], via=PEARL, now_ms=3_000, cursor=("pull:hub-pearl", 7)).applied == 1
        assert store.get("person", ch.record_id) == ch.state
        assert [(e.origin, e.seq) for e in store.history("person", ch.record_id)] == [(N45, 1)]
        assert store.cursor("pull:hub-pearl") == 7
    finally:
        store.close()
        author.close()


def test_hub_store_locked_when_an_ack_arrives_does_not_wedge_the_pull(tmp_path: Path,
                                                                      rng: random.Random) -> None:
    """A hub counts a subscriber's ack when it arrives and writes it with its next transaction or
    a background flush (runtime.acks.AckBook). A store that is locked at that moment (a careless
    backup, the database server gone for a moment) must neither wedge the stream (a stream whose
    acks are not counted never sends another batch, while the node waits for ever) nor lose the
    ack: once the store is free again, the ack is on disk."""
    def pearl_short_busy_timeout(f: Federation) -> None:
        db = f.root.resolve() / "hubs" / "pearl" / "hub.db"
        f.set_database(PEARL, f"sqlite:///{db}?timeout={BUSY_S}")

    with small_federation(tmp_path / "fed", PROVINCES, pearl_short_busy_timeout) as fed:
        fed.stop(N44)
        recs = [fed.write(N45, "create", person(rng, household="45", residence="44")) for _ in range(3)]
        for rec in recs:  # through hub-pearl, so in its log
            eventually(lambda: fed.get(NATIONAL, rec["person_id"]) == rec, SLOW)

        d = fed.root / "nodes" / "44"
        db = fed.root / "hubs" / "pearl" / "hub.db"
        address = load_any(fed.fed.configs[PEARL]).listen
        requests: queue.Queue[fpb.PullRequest | None] = queue.Queue()

        def stored_ack() -> int | None:
            with closing(sqlite3.connect(db, timeout=5)) as conn:
                row = conn.execute("SELECT value FROM cursors WHERE name = 'out:province-44'").fetchone()
            return row[0] if row else None

        with secure_channel(address, PEARL, fed.root / "ca" / "ca.crt", d / "tls.crt", d / "tls.key") as channel:
            call = fpb_grpc.FederationStub(channel).Pull(iter(requests.get, None), timeout=25)
            try:
                responses = iter(call)
                requests.put(fpb.PullRequest(subscribe=fpb.Subscribe(cursor=0, window=1, max_batch=1)))
                assert next(responses).WhichOneof("msg") == "hello"
                first = next(responses).batch
                assert len(first.changes) == 1 and not first.caught_up
                with exclusive_lock(db):
                    requests.put(fpb.PullRequest(ack=fpb.Ack(cursor=first.cursor, accepted=1)))
                    time.sleep(BUSY_S + 1.5)  # meanwhile the hub's flush of that ack times out, and retries
                    assert stored_ack() in (None, 0)
                # The ack was counted when it arrived: the stream moves on at once with the next batch.
                started = time.monotonic()
                second = next(responses)
                assert second.WhichOneof("msg") == "batch" and len(second.batch.changes) == 1, second
                assert second.batch.cursor > first.cursor
                assert time.monotonic() - started < 10
                # And the ack the locked store could not take is on disk once it is free.
                eventually(lambda: stored_ack() is not None and stored_ack() >= first.cursor, 10,  # type: ignore[operator]
                           message=lambda: f"hub-pearl stored ack {stored_ack()}, want {first.cursor}")
            finally:
                requests.put(None)
                call.cancel()
        assert "Traceback" not in fed.fed.log_path(PEARL).read_text(errors="replace")

        # The hub serves on; the real node gets everything, once.
        fed.fed.start(N44, wait=False)
        fed.fed.wait_healthy(N44, timeout=SLOW)
        for rec in recs:
            fed.arrives(N44, rec["person_id"], rec, timeout=SLOW)
            assert once(fed, N44, rec["person_id"]) == [(N45, recs.index(rec) + 1)]
        later = fed.write(N45, "create", person(rng, household="45", residence="44"))
        fed.arrives(N44, later["person_id"], later, timeout=SLOW)
        assert fed.quarantine(PEARL) == []


# -- the disk full --------------------------------------------------------------------------------


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem has no space left; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as err:
                    assert err.errno == errno.ENOSPC, err
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written


def test_disk_full_is_reported_the_store_stays_sound_and_sync_resumes(tmp_path: Path,
                                                                    rng: random.Random) -> None:
    disk = tmp_path / "disk"
    with tmpfs(disk, "8m"):
        db = disk / "node.db"
        with small_federation(tmp_path / "fed", PROVINCES, lambda f: f.set_database(N44, str(db))) as fed:
            assert node_db(fed) != db and db.exists()
            base = fed.write(N45, "create", person(rng, household="45", residence="44"))
            fed.arrives(N44, base["person_id"], base, timeout=SLOW)
            mine = fed.write(N44, "create", person(rng, household="44", residence="45"))
            fed.arrives(N45, mine["person_id"], mine, timeout=SLOW)
            fed.quiet(SLOW)
            seq_before = fed.status(N44)["last_seq"]

            filler = disk / "filler"
            assert fill(filler) > 0
            # 44's operator writes: refused, nothing written (a few may still fit in pages SQLite holds).
            written, attempted = {}, None
            for _ in range(50):
                fields = person(rng, household="44", residence="45")
                rid = fed.fed.person_key(fields["id_number"])
                try:
                    rec = fed.write(N44, "create", fields, record_id=rid)
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                    attempted, attempted_fields = rid, fields
                    break
                written[rid] = rec
            assert attempted is not None, "50 writes fitted on a full disk"
            refused_unavailable(lambda: fed.write(N44, "create", attempted_fields, record_id=attempted), "full")

            # 45 writes for 44: the sync session fails on the full store, is reported, and retried.
            sent = {base["person_id"]: fed.write(N45, "update", {"children": 3}, base["person_id"])}
            for _ in range(3):
                rec = fed.write(N45, "create", person(rng, household="45", residence="44"))
                sent[rec["person_id"]] = rec
            reported_down(fed, N44, "full")
            eventually(lambda: "store unavailable: database or disk is full (sync paused"
                       in log_text(fed, N44), SLOW, message="44's log does not report the full disk")
            assert fed.fed.running(N44)
            assert fed.status(N44)["last_seq"] == seq_before + len(written)
            assert integrity(db) == "ok"

            # Space freed: it resumes by itself.
            filler.unlink()
            for pid, rec in sent.items():
                fed.arrives(N44, pid, rec, timeout=SLOW)
            retry = fed.write(N44, "create", attempted_fields, record_id=attempted)
            written[attempted] = retry
            for pid, rec in written.items():
                assert fed.get(N44, pid) == rec
                fed.arrives(N45, pid, rec, timeout=SLOW)
            fed.quiet(SLOW)
            for pid in list(sent) + list(written):
                assert once(fed, N44, pid) == once(fed, N45, pid)
            seqs = sorted(s for pid in written for o, s in once(fed, N45, pid) if o == N44)
            assert seqs == list(range(seq_before + 1, seq_before + len(written) + 1))
            st = fed.status(N44)
            assert st["origins"][N45]["last_seq"] == fed.status(N45)["last_seq"]
            assert st["quarantined"] == 0 and fed.quarantine(PEARL) == []
            assert integrity(db) == "ok"
            fed.stop(N44)
            assert integrity(db) == "ok"
