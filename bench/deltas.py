"""CPU cost of the v2 delta path in the store, in one process (design doc 8; not on the wire yet).

    .venv/bin/python -m bench.deltas [--records 2000] [--batch 500]

Node 11 writes a sample person per record (``Store.write_delta``, one transaction each, as
an operator's write is) and then one update of each; a receiver verifies the seals
(``runtime.deltaintake``) and decides them (``Store.receive_deltas``) in batches. Prints
microseconds of CPU per delta for each step, to set beside ``bench.hops`` (the v1 path).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import tempfile
import time
from pathlib import Path

from certs.ca import create_ca, issue_identity
from certs.keyring import Keyring
from certs.signing import Signer, Verifier
from core.change import Envelope
from core.person import validate_person
from core.samples import sample_person
from runtime.deltaintake import check_deltas
from store.store import Store

TODAY = dt.date(2026, 1, 15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ca = create_ca(root / "ca")
        paths = issue_identity(ca, "province-11", root / "province-11")
        signer = Signer.load(paths.sign_key, paths.sign_cert)  # type: ignore[arg-type]
        keyring = Keyring(paths.ca_cert.read_bytes())
        keyring.add_certificate(signer.cert_der, now=dt.datetime.now(dt.timezone.utc))
        author = Store.open(f"sqlite:///{root / 'a.db'}", owner="province-11")
        rng = random.Random(1)
        t0 = 1_768_435_200_000
        people = [validate_person(sample_person(rng, household="11", residence="44", today=TODAY), today=TODAY)
                  for _ in range(args.records)]
        openings: dict[str, bytes] = {}  # delta id -> its openings, as they travel beside the body
        cpu = time.process_time()
        for i, p in enumerate(people):
            values = {k: v for k, v in p.items() if v is not None}
            did, delta = author.write_delta("person", f"k{i}", values, op="create", operator=None, now_ms=t0 + i,
                                            seal=signer.seal_batch)
            openings[did] = delta.openings()
        for i in range(args.records):
            did, delta = author.write_delta("person", f"k{i}", {"children": 2}, op="update", operator=None,
                                            now_ms=t0 + args.records + i, seal=signer.seal_batch)
            openings[did] = delta.openings()
        write_us = (time.process_time() - cpu) * 1e6 / (2 * args.records)
        rows = []
        for i in range(args.records):
            rows += author.history("person", f"k{i}")
        rows.sort(key=lambda e: e.lsn)
        receiver = Store.open(f"sqlite:///{root / 'r.db'}", owner="hub-national")
        verifier = Verifier(keyring)
        cpu = time.process_time()
        check_s = 0.0
        for i in range(0, len(rows), args.batch):
            chunk = rows[i:i + args.batch]
            c0 = time.process_time()
            envs = [Envelope(e.body, e.seal, openings[hashlib.sha256(e.body).hexdigest()]) for e in chunk]
            accepted, refused = check_deltas(envs, verifier, peer="hub-pearl", peer_may_forward=True)
            check_s += time.process_time() - c0
            assert not refused, refused[0].reason
            receiver.receive_deltas(accepted, via="hub-pearl", now_ms=t0 + 10 * args.records)
        total = (time.process_time() - cpu) * 1e6 / len(rows)
        print(f"write_delta (one transaction each): {write_us:8.0f} us CPU per delta")
        print(f"intake (parse, openings, seal, values): {check_s * 1e6 / len(rows):8.0f} us CPU per delta")
        print(f"intake + receive_deltas, batches of {args.batch}: {total:8.0f} us CPU per delta")
        author.close()
        receiver.close()


if __name__ == "__main__":
    main()
