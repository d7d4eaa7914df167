"""A writer process for the crash-safety contract test; SIGKILLed on purpose.

    python -m tests.support.crash_writer URL OWNER SIGN_KEY SIGN_CERT SEED

Opens the store at URL as OWNER and calls ``Store.write_local`` in a tight
loop, signing with the given credentials: mostly new person records, and every
third write an update of one it wrote earlier. After each ``write_local``
returns (so the transaction has committed) it prints ``<seq> <record id>`` and
flushes, so the parent knows exactly which writes were committed before it
killed this process. It never exits on its own (except after a safety limit).
"""

from __future__ import annotations

import random
import sys
import time
from datetime import date

from certs.signing import Signer
from core.identity import Identity
from core.person import validate_person
from core.samples import sample_person
from store.store import Store

TODAY = date(2026, 1, 15)
SAFETY_LIMIT = 100_000


def main(argv: list[str]) -> int:
    url, owner, key_path, cert_path, seed = argv
    signer = Signer.load(key_path, cert_path)
    store = Store.open(url, owner=owner)
    rng = random.Random(int(seed))
    home = Identity.parse(owner).name
    written: list[dict[str, object]] = []
    for i in range(SAFETY_LIMIT):
        if written and i % 3 == 2:
            person = dict(rng.choice(written))
            person["children"] = rng.randint(0, 3)
            op = "update"
        else:
            person = sample_person(rng, household=home, residence=rng.choice(("11", "44", "45")), today=TODAY)
            written.append(person)
            op = "create"
        values = validate_person(person, today=TODAY)
        change = store.write_local(
            "person", str(values["id_number"]),
            lambda current, v=values, o=op: ("create" if current is None else o, v),
            operator=None, now_ms=int(time.time() * 1000),
            seal=lambda bodies: signer.seal_batch(bodies),
        )
        # One write of one whole line (print would write its pieces separately when unbuffered).
        sys.stdout.write(f"{change.seq} {change.record_id}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
