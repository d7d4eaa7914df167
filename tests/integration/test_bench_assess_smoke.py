"""The assess benchmark (bench/assess.py) at tiny sizes: it loads a national hub store, starts the
real hub process on it and gets the figures back over mTLS, counting everything it loaded."""

from __future__ import annotations

import json
from pathlib import Path

from bench.assess import main


def test_bench_assess_smoke(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["--people", "2000", "--requests", "300", "--services", "400", "--certificates", "100",
                 "--workdir", str(tmp_path / "w"), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["loaded"] == {"person": 2000, "request": 300, "service": 400, "certificate": 100, "log": 2800}  # one change-log row per record loaded
    assert r["migrants"] == 2000 and r["requests_received"] == 300 and r["flow_pairs"] > 500
    assert r["pass"] is True and 0 < r["assess_median_s"] < 2
