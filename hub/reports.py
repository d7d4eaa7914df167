"""Reports peers send about themselves (Push ``report``), checked against a schema.

How this works. A node tells its hub its figures every few seconds; a regional hub passes
its nodes' latest reports up to the national hub, whose ``status`` and ``/metrics`` show
them. Everything in a report is the peer's word, so nothing of it is kept unless the whole
report fits the schema below: known keys only (others are dropped), each of its type and
range, at most ``MAX_ORIGINS`` delivery rows and ``MAX_NODES`` node reports. A report that
does not fit is refused with the key and the reason (``BadReport``), the stream goes on,
and the hub counts it per peer for status. What status then reads is always of the right
type, whatever a peer sent.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from core.identity import PROVINCE_CODES

MAX_REPORT = 1024 * 1024
MAX_ORIGINS = 64
MAX_NODES = 40
MAX_INT = 2**63 - 1


class BadReport(ValueError):
    """A report that does not fit the schema; the message names the key and the reason."""


def _count(key: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_INT:
        raise BadReport(f"{key}: must be an integer >= 0")
    return value


def _seconds(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= 10**9:
        raise BadReport(f"{key}: must be a number of seconds >= 0 or null")
    return value


def _province_identity(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("province-") or value[9:] not in PROVINCE_CODES:
        raise BadReport(f"{key}: {value!r:.40} is not a province identity")
    return value


def _delivery(key: str, value: Any) -> dict[str, dict[str, float | int]]:
    if not isinstance(value, dict) or len(value) > MAX_ORIGINS:
        raise BadReport(f"{key}: must be an object of at most {MAX_ORIGINS} origins")
    out = {}
    for origin, row in value.items():
        _province_identity(f"{key} origin", origin)
        if not isinstance(row, dict):
            raise BadReport(f"{key}.{origin}: must be an object")
        out[origin] = {"changes": _count(f"{key}.{origin}.changes", row.get("changes", 0)),
                       "p50_s": _seconds(f"{key}.{origin}.p50_s", row.get("p50_s")) or 0.0,
                       "p95_s": _seconds(f"{key}.{origin}.p95_s", row.get("p95_s")) or 0.0}
    return out


_Check = Callable[[str, Any], Any]
NODE_SCHEMA: dict[str, _Check] = {
    "at_ms": _count, "records": _count, "last_seq": _count, "acked_seq": _count, "backlog": _count,
    "oldest_age_s": _seconds, "max_lag_s": _seconds, "conflicts": _count, "quarantined": _count,
    "delivery": _delivery,
}
HUB_SCHEMA: dict[str, _Check] = {"at_ms": _count, "log_lsn": _count, "quarantined": _count}


def _fit(doc: Any, schema: dict[str, _Check], where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise BadReport(f"{where}: must be a JSON object")
    return {key: check(f"{where}{key}", doc[key]) for key, check in schema.items() if key in doc}


def parse(text: str, *, from_hub: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the sender's own report, its nodes' reports by identity; only a hub sends those).

    Raises BadReport naming the key and the reason."""
    if len(text) > MAX_REPORT:
        raise BadReport(f"report: {len(text)} characters is over the {MAX_REPORT}-character limit")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise BadReport("report: not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadReport("report: must be a JSON object")
    if not from_hub:
        return _fit(doc, NODE_SCHEMA, ""), {}
    own = _fit(doc, HUB_SCHEMA, "")
    nodes = doc.get("nodes", {})
    if not isinstance(nodes, dict) or len(nodes) > MAX_NODES:
        raise BadReport(f"nodes: must be an object of at most {MAX_NODES} node reports")
    out = {}
    for identity, report in nodes.items():
        _province_identity("nodes", identity)
        node = _fit(report, NODE_SCHEMA, f"nodes.{identity}.")
        # "via" and "received_ms" are the relaying hub's own additions: keep them only as the right types.
        if isinstance(report.get("received_ms"), int):
            node["received_ms"] = _count(f"nodes.{identity}.received_ms", report["received_ms"])
        out[identity] = node
    return own, out
