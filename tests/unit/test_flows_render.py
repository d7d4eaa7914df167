"""The flow report renders in every format: a real PNG, a well-formed SVG with the drawing, an
HTML page that headless Chromium (Debian's ``chromium``) loads without a console message and on
which plotly drew the chart; and the CSV is the matrix itself. Chromium or a CJK font missing
skips here, and fails under CI=true (scripts/test installs both)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cli.flowchart import Flows, cjk_font, draw_html, draw_static, write_csv

ROWS = [
    {"household": "43", "residence": "44", "migrants": 120},  # 湖南 -> 广东, within 泛珠三角
    {"household": "45", "residence": "44", "migrants": 80},
    {"household": "34", "residence": "31", "migrants": 60},   # 安徽 -> 上海
    {"household": "13", "residence": "11", "migrants": 40},
    {"household": "65", "residence": "11", "migrants": 3},    # 新疆 -> 北京, across zones
    {"household": "99", "residence": "11", "migrants": 5},    # unknown code: ignored
]


def _need(what: str, ok: bool) -> None:
    if not ok:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI must run the render check: {what} is missing (scripts/test installs it)", pytrace=False)
        pytest.skip(f"{what} is missing (scripts/test installs it)")


def _font() -> None:
    try:
        cjk_font()
    except RuntimeError as err:
        _need(f"a CJK font ({err})", False)


def test_matrix_orders_by_zone_and_ranks_flows() -> None:
    f = Flows.of(ROWS)
    assert len(f.codes) == 32 and [z for z, _, _ in f.zones] == ["bohai", "yangtze", "pearl", "northwest"]
    assert f.total == 303
    assert f.top(2) == [("43", "44", 120), ("45", "44", 80)]
    assert f.matrix[f.codes.index("65")][f.codes.index("11")] == 3


def test_png_and_svg(tmp_path: Path) -> None:
    _font()
    f = Flows.of(ROWS)
    png, svg = tmp_path / "flows.png", tmp_path / "flows.svg"
    draw_static(f, png, "2026-01-01 至 今")
    draw_static(f, svg, "2026-01-01 至 今")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # not a blank canvas
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    paths = [e for e in root.iter() if e.tag.endswith("path")]
    assert len(paths) > 100  # cells, bars and the glyphs (text is drawn as paths)


def test_html_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    _need("chromium", chromium is not None)
    page = tmp_path / "flows.html"
    draw_html(Flows.of(ROWS), page, "2026-01-01 至 今")
    html = page.read_text(encoding="utf-8")
    assert "湖南 → 广东" in html and "泛珠三角" in html and "<script" in html
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page logged to the console:\n" + "\n".join(console)
    dom = result.stdout
    assert 'class="main-svg"' in dom, "plotly did not draw the chart"
    assert 'class="hm"' in dom and "trace bars" in dom, "the heat map or the bar chart is missing"


def test_csv_is_the_matrix(tmp_path: Path) -> None:
    out = tmp_path / "flows.csv"
    f = Flows.of(ROWS)
    write_csv(f, out)
    rows = list(csv.reader(out.open(encoding="utf-8")))
    assert rows[0][:2] == ["household", "household_name"] and rows[0][2:] == list(f.codes)
    by = {r[0]: r for r in rows[1:]}
    assert by["43"][1] == "湖南" and int(by["43"][2 + f.codes.index("44")]) == 120
    assert sum(int(v) for r in rows[1:] for v in r[2:]) == 303
