"""CPU cost of each hop of a cross-region change, in one process, no network.

    .venv/bin/python -m bench.hops [--changes 20000] [--batch 500] [--profile out.txt]

Runs exactly the code the processes run, minus gRPC: node 11 writes sample
people as Admin ``Import`` does (``runtime.people.write_people``), and each hop reads the batch its
upstream would send (``Store.outbox`` / ``Store.read_log`` + ``wire.batch``),
serialises and parses it as protobuf, and ingests it (``Replica.ingest_batch``):
11 -> hub-bohai -> hub-national -> hub-pearl -> 44. Prints microseconds of
CPU per change for each step, so a change to the hot path can be judged in
seconds instead of a full bench run. (The full bench, ``bench.run``, is what
the README's figures come from.)
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import pstats
import random
import tempfile
import time
from pathlib import Path

from certs.ca import create_ca, issue_identity
from certs.keyring import Keyring
from certs.signing import Signer
from core.routing import Topology
from core.samples import sample_person
from runtime import wire
from runtime.people import write_people
from runtime.replica import Replica
from runtime.records import RecordService
from runtime.serve import tune_gc
from store.store import Store
from yipanqi.v2 import federation_pb2 as pb

TOPOLOGY = Topology.of({"bohai": ["11"], "pearl": ["44"]})


def _peer(root: Path, ca_pem: bytes, identity: str, *, hub: bool, national: bool = False) -> Replica:
    store = Store.open(f"sqlite:///{root / (identity + '.db')}", owner=identity, index_routes=hub,
                       hold_records=not hub or national)
    return Replica(identity, store, Keyring(ca_pem))


def run(changes: int, batch: int, profile: Path | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="yipanqi-hops-") as tmp:
        root = Path(tmp)
        ca = create_ca(root / "ca")
        paths = issue_identity(ca, "province-11", root / "province-11")
        signer = Signer.load(paths.sign_key, paths.sign_cert)  # type: ignore[arg-type]
        n11 = _peer(root, ca.cert_pem, "province-11", hub=False)
        n11.keyring.add_certificate(signer.cert_der, now=dt.datetime.now(dt.timezone.utc))
        bohai = _peer(root, ca.cert_pem, "hub-bohai", hub=True)
        national = _peer(root, ca.cert_pem, "hub-national", hub=True, national=True)
        pearl = _peer(root, ca.cert_pem, "hub-pearl", hub=True)
        n44 = _peer(root, ca.cert_pem, "province-44", hub=False)

        rng = random.Random(7)
        today = dt.date.today()
        rows: list[tuple[str, str, str, dict]] = []  # one row per person: an ID number is one key (core.personkey)
        seen: set[object] = set()
        while len(rows) < changes:
            p = sample_person(rng, household="11", residence="44", today=today)
            if p["id_number"] not in seen:
                seen.add(p["id_number"])
                rows.append(("create", "person", "", p))
        service = RecordService(n11, signer, person_secret=bytes(32))
        times: dict[str, float] = {}
        prof = cProfile.Profile() if profile else None

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            t0 = time.process_time()
            if prof:
                prof.enable()
            out = fn()
            if prof:
                prof.disable()
            times[name] = times.get(name, 0.0) + time.process_time() - t0
            return out

        for i in range(0, changes, batch):
            timed("write at 11", lambda: write_people(service, rows[i:i + batch], "bench"))

        def hop(name: str, src: Replica, dst: Replica, read, *, via: str, forward: bool, province: str | None) -> None:  # type: ignore[no-untyped-def]
            position = 0
            while True:
                entries, pos = timed(f"{name}: read", lambda: read(position))
                if pos == position:
                    return
                if not entries:
                    position = pos
                    continue
                raw = timed(f"{name}: encode", lambda: wire.batch(pos, entries,
                                                                  [signer.cert_der]).SerializeToString())
                msg = timed(f"{name}: decode", lambda: pb.Batch.FromString(raw))
                timed(f"{name}: ingest", lambda: dst.ingest_batch(msg, via=via, peer_may_forward=forward,
                                                                  for_province=province, cursor_name=f"in:{via}"))
                position = pos

        hop("11 -> bohai", n11, bohai, lambda p: _outbox(n11.store, p, batch), via="province-11",
            forward=False, province=None)
        hop("bohai -> national", bohai, national,
            lambda p: bohai.store.read_log(p, not_via="hub-national", limit=batch), via="hub-bohai",
            forward=True, province=None)
        hop("national -> pearl", national, pearl,
            lambda p: national.store.read_log(p, flt=TOPOLOGY.subscription("national", "hub-pearl"), limit=batch),
            via="hub-national", forward=True, province=None)
        hop("pearl -> 44", pearl, n44,
            lambda p: pearl.store.read_log(p, flt=TOPOLOGY.subscription("pearl", "province-44"), limit=batch),
            via="hub-pearl", forward=True, province="44")
        got = n44.store.count_records()
        if got != changes:
            raise SystemExit(f"only {got} of {changes} changes arrived at 44")
        if prof and profile:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(40)
            profile.write_text(out.getvalue())
        for p in (n11, bohai, national, pearl, n44):
            p.store.close()
        return {k: v / changes * 1e6 for k, v in times.items()}


def _outbox(store: Store, position: int, batch: int):  # type: ignore[no-untyped-def]
    entries = store.outbox(position, batch)
    return entries, (entries[-1].seq if entries else position)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--profile", type=Path, help="write a cProfile summary (top 40 by own time) here")
    ap.add_argument("--default-gc", action="store_true", help="keep Python's default collector settings "
                    "(the servers tune them: runtime.serve.tune_gc)")
    args = ap.parse_args()
    if not args.default_gc:
        tune_gc()
    per = run(args.changes, args.batch, args.profile)
    width = max(map(len, per))
    total = 0.0
    for name, us in per.items():
        total += us
        print(f"{name:<{width}}  {us:8.1f} µs/change")
    print(f"{'total':<{width}}  {total:8.1f} µs/change  (~{1e6 / total * 2:,.0f} changes/s on 2 cores, "
          "before gRPC and thread overhead)")


if __name__ == "__main__":
    main()
