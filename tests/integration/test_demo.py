"""`yipanqi demo` on a small federation (real processes, as ./scripts/demo runs it): its story
includes requests between provinces (区域协作), and its closing output is the national
assessment table (双向考核)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.conftest import yipanqi


def test_demo_sends_requests_and_closes_with_the_assessment_table(tmp_path: Path) -> None:
    r = yipanqi("demo", "--dir", tmp_path / "demo", "--provinces", "11,44,65", "--people", "30", "--duration", "2",
                timeout=600, env={"COLUMNS": "200"})
    out = r.stdout
    assert r.returncode == 0, r.stderr + out
    lines = list(re.finditer(r"^request [0-9a-f]{8} from \S+ to \S+ \(.+\): (answered|open)$", out, re.M))
    states = [m.group(1) for m in lines]
    assert len(states) >= 2 and "answered" in states and states[-1] == "open", out
    tail = out[lines[-1].end():]  # the closing output comes after the story and the live table
    assert "双向考核" in tail and "no assessment table" not in out, out
    table = tail[tail.index("双向考核"):]
    assert sum(name in table for name in ("北京", "广东", "新疆")) >= 2, table  # scored provinces, by name
    assert "yipanqi assess -c" in table and "stopped; the stores stay in" in out
