"""Physical limits of this machine, measured in-process (section 6 of the bench).

Each figure is the best a single Python thread on one core can do with the
same libraries the product uses, with no product code in the way:

* Ed25519 sign / verify (``cryptography``) of the 49-byte batch message;
* SHA-256 of ~400-byte bodies (``hashlib``), the leaf hash of every change;
* raw SQLite batch insert: ``executemany`` of 500-row batches of ~1 KB blobs
  into a WAL database with ``synchronous=FULL``, one commit (fsync) per batch,
  plus the commit latency of one 50-row batch (the latency floor per hop);
* raw batched gRPC bidi stream over loopback mutual TLS: a tiny in-process
  server acknowledging ``Batch`` messages of 500 small ``SignedChange``s, four
  batches in flight (the product's window), plus the round trip of one
  50-change batch.

Nothing here touches the federation; it runs before the federation starts so
the figures are not disturbed by it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import statistics
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519

from yipanqi.v2 import federation_pb2 as fpb

BODY_SIZE = 400
BLOB_SIZE = 1024
BATCH = 500
SMALL_BATCH = 50
WINDOW = 4
PROOF_HASHES = 9  # a 500-leaf Merkle proof


def _rate(fn, seconds: float, per_call: int = 1) -> float:  # type: ignore[no-untyped-def]
    """Operations per second of ``fn`` called in a loop for about ``seconds``."""
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += per_call
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def ed25519_rates(seconds: float) -> dict[str, float]:
    key = ed25519.Ed25519PrivateKey.generate()
    pub = key.public_key()
    msg = b"yipanqi/batch/v1\n" + os.urandom(32)
    sig = key.sign(msg)

    def sign_many() -> None:
        for _ in range(50):
            key.sign(msg)

    def verify_many() -> None:
        for _ in range(50):
            pub.verify(sig, msg)

    return {"sign_per_s": _rate(sign_many, seconds, 50), "verify_per_s": _rate(verify_many, seconds, 50)}


def sha256_rate(seconds: float) -> dict[str, float]:
    bodies = [os.urandom(BODY_SIZE) for _ in range(1000)]
    sha = hashlib.sha256

    def hash_many() -> None:
        for b in bodies:
            sha(b"\x00" + b).digest()

    per_s = _rate(hash_many, seconds, len(bodies))
    return {"sha256_per_s": per_s, "sha256_mb_per_s": per_s * (BODY_SIZE + 1) / 1e6, "body_bytes": BODY_SIZE}


def sqlite_rates(workdir: Path, seconds: float) -> dict[str, float]:
    path = workdir / "limits-sqlite.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, origin TEXT NOT NULL, seq INTEGER NOT NULL, "
                   "body BLOB NOT NULL, UNIQUE (origin, seq))")
        blobs = [os.urandom(BLOB_SIZE) for _ in range(BATCH)]
        seq = 0

        def batch(size: int) -> None:
            nonlocal seq
            rows = [("province-11", seq + i, blobs[i % BATCH]) for i in range(size)]
            seq += size
            db.execute("BEGIN")
            db.executemany("INSERT INTO t (origin, seq, body) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")

        rows_per_s = _rate(lambda: batch(BATCH), seconds, BATCH)
        commits = []
        for _ in range(max(10, int(seconds * 40))):
            t = time.perf_counter()
            batch(SMALL_BATCH)
            commits.append(time.perf_counter() - t)
            if sum(commits) > seconds:
                break
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"sqlite_rows_per_s": rows_per_s, "sqlite_row_bytes": BLOB_SIZE,
            "sqlite_commit50_ms": statistics.median(commits) * 1000}


def postgres_rates(url: str, seconds: float) -> dict[str, float]:
    """The SQLite figure's twin on a PostgreSQL server: 500-row executemany batches of 1 KB, one commit each."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = psycopg.connect(host=u.host or "localhost", port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database or "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE bench_t (id bigserial PRIMARY KEY, origin text NOT NULL, "
                        "seq bigint NOT NULL, body bytea NOT NULL, UNIQUE (origin, seq))")
        conn.commit()
        blobs = [os.urandom(BLOB_SIZE) for _ in range(BATCH)]
        seq = 0

        def batch(size: int) -> None:
            nonlocal seq
            rows = [("province-11", seq + i, blobs[i % BATCH]) for i in range(size)]
            seq += size
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_t (origin, seq, body) VALUES (%s, %s, %s)", rows)
            conn.commit()

        rows_per_s = _rate(lambda: batch(BATCH), seconds, BATCH)
        commits = []
        while sum(commits) < seconds and len(commits) < 2000:
            t = time.perf_counter()
            batch(SMALL_BATCH)
            commits.append(time.perf_counter() - t)
    finally:
        conn.close()
    return {"pg_rows_per_s": rows_per_s, "pg_commit50_ms": statistics.median(commits) * 1000}


def _tls_material(workdir: Path) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    from certs.ca import create_ca, issue_identity

    d = workdir / "limits-ca"
    if not (d / "ca" / "ca.crt").exists():
        ca = create_ca(d / "ca")
        issue_identity(ca, "hub-national", d / "server")
        issue_identity(ca, "hub-pearl", d / "client")
    read = lambda p: (d / p).read_bytes()  # noqa: E731
    return (read("ca/ca.crt"), read("server/tls.crt"), read("server/tls.key"), read("client/tls.crt"),
            read("client/tls.key"))


def grpc_rates(workdir: Path, seconds: float) -> dict[str, float]:
    ca, scrt, skey, ccrt, ckey = _tls_material(workdir)

    def echo(request_iterator, context):  # type: ignore[no-untyped-def]
        for batch in request_iterator:
            yield fpb.Ack(cursor=batch.cursor, accepted=len(batch.changes))

    handler = grpc.method_handlers_generic_handler("bench.Echo", {
        "Stream": grpc.stream_stream_rpc_method_handler(
            echo, request_deserializer=fpb.Batch.FromString, response_serializer=fpb.Ack.SerializeToString),
    })
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(skey, scrt)], root_certificates=ca, require_client_auth=True))
    server.start()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=ckey, certificate_chain=ccrt)
    channel = grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options)
    call_stream = channel.stream_stream("/bench.Echo/Stream", request_serializer=fpb.Batch.SerializeToString,
                                        response_deserializer=fpb.Ack.FromString)

    def make(size: int) -> fpb.Batch:
        seal = fpb.Seal(key_id="ed25519:" + "ab" * 16, signature=os.urandom(64), index=0, size=BATCH,
                        proof=[os.urandom(32) for _ in range(PROOF_HASHES)])
        return fpb.Batch(cursor=1, changes=[fpb.SignedChange(body=os.urandom(BODY_SIZE), seal=seal)
                                            for _ in range(size)])

    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        # Throughput: batches of 500 changes, WINDOW unacknowledged at a time, like the product.
        big = make(BATCH)
        window = threading.Semaphore(WINDOW)
        stop = threading.Event()

        def requests():  # type: ignore[no-untyped-def]
            while not stop.is_set():
                if window.acquire(timeout=0.5):
                    yield big

        acked = 0
        start = time.perf_counter()
        deadline = start + seconds
        responses = call_stream(requests())
        for ack in responses:
            acked += ack.accepted
            window.release()
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
        stop.set()
        responses.cancel()
        msgs_per_s = acked / elapsed

        # Latency: one 50-change batch at a time, round trip.
        small = make(SMALL_BATCH)
        go = threading.Semaphore(1)
        done = threading.Event()

        def one_at_a_time():  # type: ignore[no-untyped-def]
            while not done.is_set():
                if go.acquire(timeout=0.5):
                    yield small

        rtts = []
        responses = call_stream(one_at_a_time())
        t = time.perf_counter()
        end = t + max(0.2, seconds / 2)
        for _ack in responses:
            now = time.perf_counter()
            rtts.append(now - t)
            if now >= end or len(rtts) >= 2000:
                break
            t = time.perf_counter()
            go.release()
        done.set()
        responses.cancel()
    finally:
        channel.close()
        server.stop(0)
    return {"grpc_msgs_per_s": msgs_per_s, "grpc_batch": BATCH, "grpc_window": WINDOW,
            "grpc_rtt50_ms": statistics.median(rtts) * 1000}


def measure(workdir: Path, seconds: float, say=print, pg_url: str | None = None) -> dict[str, float]:  # type: ignore[no-untyped-def]
    out: dict[str, float] = {}
    steps = [("ed25519", lambda: ed25519_rates(seconds)), ("sha256", lambda: sha256_rate(seconds)),
             ("sqlite", lambda: sqlite_rates(workdir, seconds)), ("grpc", lambda: grpc_rates(workdir, seconds))]
    if pg_url:
        steps.append(("postgresql", lambda: postgres_rates(pg_url, seconds)))
    for name, fn in steps:
        say(f"limits: {name}")
        out.update(fn())
    return out
