"""A real hub process with one behaviour swapped: how it relays reports upward, or what it serves.

``drop-creates-to-45``: serving province 45, the hub leaves out every record's create (a hub
that drops a change); 45 parks what depends on it and fetches it (Fetch, issue 10).

``forge-reports``:

How this works. ``python -m tests.support.rogue_hub forge-reports -c hub.toml`` runs the
project's own hub (hub.server.run_hub) with ``ForgingRelay`` as its report relay
(hub.federation.ReportRelay), chosen through the launcher's ``entries`` option
(tests.support.launcher.Federation.entries), not by patching private names. Every report it sends up
still carries its nodes' honest signed reports, and besides them, each time:

* a report "by" province 11 (another region) saying records 999, up, with 44's key id,
  certificate and signature (a signature over other bytes);
* a report "by" province 46 (a province with no node) carrying a forged receiver row that
  blames province 45's deliveries (p95 2 h), under a key id nobody issued;
* 45's latest signed report with its body altered (records 999, quarantine zeroed), signature kept;
* 45's first signed report, replayed (it keeps a stopped node "up" if anything would).

The national hub must refuse all of them, count them against this hub, and keep the honest rows.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any, Callable

from runtime.config import load_hub
from hub.federation import ReportRelay
from hub.server import run_hub
from store.store import LogEntry

FORGED_RECORDS = 999
FORGED_DELAY_S = 7200.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _body(identity: str, **figures: Any) -> str:
    return json.dumps({"identity": identity, "at_ms": _now_ms(), **figures}, sort_keys=True, separators=(",", ":"))


class ForgingRelay(ReportRelay):
    def __init__(self) -> None:
        self.first: dict[str, dict[str, Any]] = {}  # identity -> the first signed report seen

    def upward(self, report: dict[str, Any]) -> dict[str, Any]:
        honest = list(report.get("nodes", []))
        by = {json.loads(e["body"])["identity"]: e for e in honest}
        for identity, envelope in by.items():
            self.first.setdefault(identity, envelope)
        forged: list[dict[str, Any]] = []
        if "province-44" in by:
            e44 = by["province-44"]
            forged.append({**e44, "body": _body("province-11", records=FORGED_RECORDS, backlog=0, quarantined=0)})
        forged.append({"body": _body("province-46", records=FORGED_RECORDS,
                                     delivery={"province-45": {"changes": 50, "p50_s": 1800.0,
                                                               "p95_s": FORGED_DELAY_S}}),
                       "key_id": "ed25519:0000000000000000",
                       "signature": base64.b64encode(bytes(64)).decode()})
        if "province-45" in by:
            e45 = by["province-45"]
            body = {**json.loads(e45["body"]), "records": FORGED_RECORDS, "quarantined": 0}
            forged.append({**e45, "body": json.dumps(body, sort_keys=True, separators=(",", ":"))})
            if self.first["province-45"] is not e45:
                forged.append(self.first["province-45"])
        return {**report, "nodes": honest + forged}


def drop_creates_to_45(peer: str, entries: list[LogEntry]) -> list[LogEntry]:
    """Serving province 45, leave out every record's first delta (a create): what 45 receives of
    those records then waits for it (parked), until 45 fetches it."""
    if peer != "province-45":
        return entries
    return [e for e in entries if e.op != "create"]


BEHAVIOURS: dict[str, Callable[[], dict[str, Any]]] = {
    "forge-reports": lambda: {"relay": ForgingRelay()},
    "drop-creates-to-45": lambda: {"serving": drop_creates_to_45},
}


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in BEHAVIOURS or argv[1] != "-c":
        raise SystemExit(f"usage: python -m tests.support.rogue_hub {{{','.join(BEHAVIOURS)}}} -c HUB_CONFIG")
    run_hub(load_hub(argv[2]), **BEHAVIOURS[argv[0]]())


if __name__ == "__main__":
    main(sys.argv[1:])
