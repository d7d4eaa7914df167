"""The assessment of both sides (双向考核): figures per province, indicators, one score.

How this works: the store answers GROUP BY queries (store/assess.py); ``figures``
folds their rows into one document per province, as the residence side (流入地),
the household side (户籍地) and a member of the federation. ``score`` turns those
figures into indicators between 0 and 1 and weighs them with the weights the
national level keeps in its weights file (``Weights.parse`` validates it):

    score = 100 * sum(weight_i * indicator_i) / sum(weight_i)

over the indicators that apply to the province (one with nothing to measure, e.g.
no request received, is left out of both sums rather than counted as 0 or 1). A
province with nothing to assess on either side (no migrants living there, no
request received) gets no score and is listed last.
Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.errors import ValidationError
from core.identity import Identity

SIDES = ("residence", "household")

# Indicator name -> what it measures (the README repeats this table).
INDICATORS: dict[str, str] = {
    "coverage": "residence side: migrants living here with at least one service in the period / migrants living here",
    "residence_answers": "residence side: requests received answered on time / requests received",
    "household_answers": "household side: requests received answered on time / requests received",
    "delivery": "federation: min(1, delivery_target_s / p95 delivery delay of its changes)",
    "clean": "federation: 1 / (1 + its changes quarantined in the period)",
}


# A province none of these apply to (no migrants living there, no request received) is not scored.
SIDE_INDICATORS = ("coverage", "residence_answers", "household_answers")


@dataclass(frozen=True)
class Weights:
    weights: dict[str, float] = field(default_factory=lambda: {
        "coverage": 30.0, "residence_answers": 25.0, "household_answers": 25.0, "delivery": 10.0, "clean": 10.0})
    delivery_target_s: float = 60.0

    @classmethod
    def parse(cls, doc: Mapping[str, object], where: str = "weights") -> "Weights":
        """Validated weights from a parsed TOML document: ``[weights]`` name = number >= 0, and
        optionally ``delivery_target_s`` > 0 at the top level."""
        unknown = set(doc) - {"weights", "delivery_target_s"}
        if unknown:
            raise ValidationError(f"{where}: {sorted(unknown)[0]}", "unknown key (known: weights, delivery_target_s)")
        raw = doc.get("weights", {})
        if not isinstance(raw, Mapping):
            raise ValidationError(f"{where}: weights", "must be a table of indicator = number")
        weights = {}
        for name, value in raw.items():
            if name not in INDICATORS:
                raise ValidationError(f"{where}: weights.{name}", f"unknown indicator (known: {', '.join(INDICATORS)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e6:
                raise ValidationError(f"{where}: weights.{name}", f"{value!r} is not a number between 0 and 1000000")
            weights[name] = float(value)
        if not weights or not any(weights.values()):
            raise ValidationError(f"{where}: weights", "at least one indicator needs a weight above 0")
        target = doc.get("delivery_target_s", 60.0)
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 86400 * 30:
            raise ValidationError(f"{where}: delivery_target_s", f"{target!r} is not a number of seconds above 0")
        return cls(weights, float(target))


def median_of(histogram: Iterable[tuple[int, int]]) -> float | None:
    """The median of values given as (value, how many), the middle two averaged when even."""
    items = sorted((v, n) for v, n in histogram if n > 0)
    total = sum(n for _, n in items)
    if not total:
        return None
    wanted = [(total - 1) // 2, total // 2]  # 0-based ranks of the middle value(s)
    found: list[int] = []
    seen = 0
    for v, n in items:
        while len(found) < 2 and wanted[len(found)] < seen + n:
            found.append(v)
        seen += n
    return (found[0] + found[1]) / 2


def _requests() -> dict[str, object]:
    return {"received": 0, "answered_on_time": 0, "overdue": 0, "median_answer_days": None}


def blank(code: str, name: str, region: str) -> dict[str, object]:
    return {
        "province": code, "name": name, "region": region,
        "residence": {"migrants": 0, "served": 0, "coverage": None, "certificates_verified": 0,
                      "requests": _requests()},
        "household": {"living_elsewhere": 0, "certificates_issued": 0, "certificates_revoked": 0,
                      "requests": _requests()},
        "federation": {"delivery_changes": 0, "delivery_p50_s": None, "delivery_p95_s": None, "quarantined": 0,
                       "quarantined_claiming": 0},
    }


def fold(docs: dict[str, dict], *, pairs: Iterable[tuple[str, str, int]] = (),
         served: Iterable[tuple[str, int]] = (), verified: Iterable[tuple[str, int]] = (),
         issued: Iterable[tuple[str, int]] = (), revoked: Iterable[tuple[str, int]] = (),
         requests: Iterable[tuple[str, str | None, int, int, int]] = (),
         answer_days: Iterable[tuple[str, str | None, int, int]] = (),
         quarantined: Mapping[str, int] | None = None, claiming: Mapping[str, int] | None = None,
         delivered: Mapping[str, tuple[int, float, int]] | None = None,
         delivery: Mapping[str, tuple[float | None, float | None]] | None = None) -> dict[str, dict]:
    """Add query rows to the per-province documents (provinces not in ``docs`` are ignored).

    ``quarantined``: identity -> changes refused charged to it; ``claiming``: identity -> changes
    refused claiming it as origin; ``delivered``: identity -> (changes, median ms, p95 ms) of
    its changes received here (store.assess.delivery_delays); ``delivery``: code -> (p50 s, p95 s),
    figures given in seconds instead (used where ``delivered`` has no row)."""
    def side(code: str, name: str) -> dict | None:
        doc = docs.get(code)
        return None if doc is None else doc[name]

    for h, r, n in pairs:
        if (s := side(r, "residence")) is not None:
            s["migrants"] += n
        if (s := side(h, "household")) is not None:
            s["living_elsewhere"] += n
    for rows, where, key in ((served, "residence", "served"), (verified, "residence", "certificates_verified"),
                             (issued, "household", "certificates_issued"),
                             (revoked, "household", "certificates_revoked")):
        for code, n in rows:
            if (s := side(code, where)) is not None:
                s[key] += n
    for code, to_side, n, ok, late in requests:
        if to_side in SIDES and (s := side(code, to_side)) is not None:
            q = s["requests"]
            q["received"] += n
            q["answered_on_time"] += ok
            q["overdue"] += late
    hist: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for code, to_side, days, n in answer_days:
        if to_side in SIDES:
            hist.setdefault((code, to_side), []).append((days, n))
    for (code, to_side), values in hist.items():
        if (s := side(code, to_side)) is not None:
            s["requests"]["median_answer_days"] = median_of(values)
    for code, doc in docs.items():
        res = doc["residence"]
        res["coverage"] = round(res["served"] / res["migrants"], 4) if res["migrants"] else None
        fed = doc["federation"]
        who = str(Identity.for_province(code))
        fed["quarantined"] = (quarantined or {}).get(who, 0)
        fed["quarantined_claiming"] = (claiming or {}).get(who, 0)
        if (row := (delivered or {}).get(who)) is not None:
            n, p50_ms, p95_ms = row
            fed["delivery_changes"] = n
            fed["delivery_p50_s"], fed["delivery_p95_s"] = round(p50_ms / 1000, 3), round(p95_ms / 1000, 3)
        else:
            p50, p95 = (delivery or {}).get(code, (None, None))
            fed["delivery_p50_s"], fed["delivery_p95_s"] = p50, p95
    return docs


def indicators(doc: Mapping[str, dict], weights: Weights) -> dict[str, float | None]:
    """Each indicator of one province's figures, between 0 and 1, or None where nothing is measured."""
    res, hh, fed = doc["residence"], doc["household"], doc["federation"]

    def share(q: Mapping[str, int]) -> float | None:
        return q["answered_on_time"] / q["received"] if q["received"] else None

    p95 = fed["delivery_p95_s"]
    return {
        "coverage": res["coverage"],
        "residence_answers": share(res["requests"]),
        "household_answers": share(hh["requests"]),
        "delivery": None if p95 is None else (1.0 if p95 <= 0 else min(1.0, weights.delivery_target_s / p95)),
        "clean": 1 / (1 + fed["quarantined"]),
    }


def score(doc: Mapping[str, dict], weights: Weights) -> tuple[float | None, dict[str, float | None]]:
    """(score 0..100 or None when no weighted indicator applies, the indicators)."""
    ind = indicators(doc, weights)
    if all(ind[k] is None for k in SIDE_INDICATORS):
        return None, {k: (None if v is None else round(v, 4)) for k, v in ind.items()}  # nothing to assess
    used = [(weights.weights[k], v) for k, v in ind.items() if v is not None and weights.weights.get(k)]
    total = sum(w for w, _ in used)
    value = None if not total else round(100 * sum(w * v for w, v in used) / total, 1)
    return value, {k: (None if v is None else round(v, 4)) for k, v in ind.items()}


def ranked(docs: Iterable[dict], weights: Weights) -> list[dict]:
    """The documents with ``score`` and ``indicators`` added, best score first (None last)."""
    out = []
    for doc in docs:
        value, ind = score(doc, weights)
        out.append({**doc, "score": value, "indicators": ind})
    return sorted(out, key=lambda d: (d["score"] is None, -(d["score"] or 0), d["province"]))
