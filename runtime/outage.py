"""Reporting outages of a process's own store: one log line when one starts, one when it ends,
and the ``store`` section of status.

The store notes its outages (store.health); this module only says so. An outage of our own
database is ours: it is never logged as, or shown as, a hub's failure (runtime.link pauses sync
and retries the same hub once the store takes writes again).
"""

from __future__ import annotations

import logging

from store.health import HealthReport
from store.store import Store

log = logging.getLogger("yipanqi.store")


def log_outages(store: Store) -> None:
    """Log each outage of ``store`` once, as it starts and as it ends (no traceback)."""
    began: list[int] = []

    def tell(event: str, report: HealthReport) -> None:
        if event == "down":
            began[:] = [report.down_since_ms or 0]
            log.error("store unavailable: %s (sync paused; retrying with backoff): %s", report.last_error,
                      report.database or "this process's database")
        else:
            took = (store.health.now_ms() - began[0]) / 1000 if began else 0.0
            log.warning("store available again after %.1f s", took)

    store.health.listener = tell


def store_report(store: Store) -> dict[str, object]:
    """The ``store`` section of status: ``ok``, ``down_since_ms``, ``last_error``, ``outages``
    (how many since the process started) and ``backend`` (``sqlite`` or ``postgresql``)."""
    r = store.health.report()
    return {
        "ok": r.ok,
        "down_since_ms": r.down_since_ms,
        "last_error": r.last_error,
        "outages": r.outages,
        "backend": store.engine.dialect.name,
    }
