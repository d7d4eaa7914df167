"""The benchmark's smoke run: `python -m bench.run --smoke` works end to end.

Only that it runs and reports every figure: no performance thresholds (the
machine may be shared with other test runs), so a missed target never fails
this test. The bench starts its own federation of OS processes on free
loopback ports and its own temp dir, like the other integration tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("throughput", "latency", "catchup", "memory", "scale")
POSITIVE = {
    "limits": ("sign_per_s", "verify_per_s", "sha256_per_s", "sqlite_rows_per_s", "sqlite_commit50_ms",
               "grpc_msgs_per_s", "grpc_rtt50_ms"),
    "throughput": ("changes_per_s", "window_s", "changes_in_window", "cpu_bound_ceiling_per_s"),
    "latency": ("offered_per_s", "changes", "p50_ms", "p95_ms", "p99_ms"),
    "catchup": ("backlog", "drain_per_s", "seconds", "local_write_per_s"),
    "memory": ("max_mb",),
    "scale": ("national_records", "loaded", "empty_national_per_s", "scale_national_per_s", "ratio",
              "status_median_ms", "get_median_ms"),
}


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.timeout(900)
def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=840,
    )
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    doc = json.loads(out.read_text())

    for key in POSITIVE["limits"]:
        assert _positive(doc["limits"].get(key)), f"limits.{key} = {doc['limits'].get(key)!r}"
    res = doc["backends"]["sqlite"]
    for section in SECTIONS:
        assert section in res, f"no {section} section"
        for key in POSITIVE[section]:
            assert _positive(res[section].get(key)), f"{section}.{key} = {res[section].get(key)!r}"
    assert res["catchup"]["backlog"] == 2000
    # Loaded up to --national-records (5,000 in smoke), counting what sections 1-3 wrote, and at least 1,000.
    assert res["scale"]["loaded"] >= 1000
    assert res["scale"]["national_records"] >= 5000
    memory = res["memory"]["peak_rss_mb"]
    assert set(memory) == {"hub-national", "hub-bohai", "hub-pearl", "province-11", "province-44"}
    assert all(_positive(v) for v in memory.values())
    assert set(res["memory"]["peak_rss_mb_by_role"]) == {"node", "regional hub", "national hub"}
    hops = res["throughput"]["hop_rates_per_s"]
    assert all(_positive(hops[h]) for h in ("province-11", "hub-bohai", "hub-national", "hub-pearl", "province-44"))
    # Every figure has its row in the table, with a verdict where there is a target.
    checks = res["checks"]
    assert {c["section"] for c in checks} >= {"1 cross-region", "2 latency", "3 catch-up", "4 memory", "5 scale"}
    assert all(c["pass"] in (True, False) for c in checks if c["target"] != "info")
    assert "yipanqi bench" in proc.stdout
