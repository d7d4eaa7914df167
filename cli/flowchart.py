"""Drawing the migrant flows: a household x residence heat map and the top flows, in Chinese.

How this works: ``Flows`` orders the 32 provinces by regional zone (环渤海, 泛长三角,
泛珠三角, 西北) so each zone is one block of rows and columns, and holds the matrix of
migrants (rows: household province 户籍地, columns: residence province 居住地). ``draw_static``
renders it with matplotlib (PNG or SVG; text drawn with a font that has the CJK glyphs,
found among the installed fonts), ``draw_html`` with plotly as one self-contained page
(the plotly library is inlined, so it opens offline). Both mark the four zones: block
outlines on the heat map, zone names along the axes, and bars coloured by the zone of
the residence province.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from core.provinces import DEFAULT_REGIONS, PROVINCES, REGION_NAMES

# Fonts with the CJK glyphs, in order of preference (Debian: fonts-wqy-microhei, fonts-noto-cjk).
CJK_FONTS = ("WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
             "Droid Sans Fallback", "AR PL UMing CN", "SimHei", "Microsoft YaHei")
ZONE_COLOURS = {"bohai": "#1f77b4", "yangtze": "#2ca02c", "pearl": "#d62728", "northwest": "#ff7f0e"}
TOP = 15


def short_name(code: str) -> str:
    name = PROVINCES[code].rsplit(" ", 1)[-1]
    return "兵团" if code == "66" else name


@dataclass(frozen=True)
class Flows:
    codes: tuple[str, ...]  # zone by zone
    zones: tuple[tuple[str, int, int], ...]  # (zone, first index, last index + 1)
    matrix: tuple[tuple[int, ...], ...]  # [household][residence]

    @classmethod
    def of(cls, rows: list[dict]) -> "Flows":
        codes: list[str] = []
        zones = []
        for zone, members in DEFAULT_REGIONS.items():
            zones.append((zone, len(codes), len(codes) + len(members)))
            codes.extend(sorted(members))
        index = {c: i for i, c in enumerate(codes)}
        m = [[0] * len(codes) for _ in codes]
        for r in rows:
            h, d, n = r.get("household"), r.get("residence"), r.get("migrants")
            if h in index and d in index and isinstance(n, int) and n > 0:
                m[index[h]][index[d]] += n
        return cls(tuple(codes), tuple(zones), tuple(tuple(row) for row in m))

    def zone_of(self, i: int) -> str:
        return next(z for z, a, b in self.zones if a <= i < b)

    def top(self, n: int = TOP) -> list[tuple[str, str, int]]:
        cells = [(self.matrix[i][j], i, j) for i in range(len(self.codes)) for j in range(len(self.codes))
                 if self.matrix[i][j] and i != j]
        cells.sort(key=lambda c: (-c[0], c[1], c[2]))
        return [(self.codes[i], self.codes[j], v) for v, i, j in cells[:n]]

    @property
    def total(self) -> int:
        return sum(map(sum, self.matrix))


def title(period: str) -> str:
    return f"流动人口流向 户籍地 → 居住地（{period}）"


def cjk_font() -> str:
    """The family name of an installed font with the Chinese glyphs (RuntimeError if none)."""
    from matplotlib import font_manager

    for attempt in range(2):
        installed = {f.name for f in font_manager.fontManager.ttflist}
        for name in CJK_FONTS:
            if name in installed:
                return name
        if attempt == 0:  # matplotlib's cached font list may predate the font's installation
            font_manager.fontManager = font_manager._load_fontmanager(try_read_cache=False)  # type: ignore[attr-defined]  # private, but the only rebuild
    raise RuntimeError("no installed font has the Chinese glyphs (looked for: " + ", ".join(CJK_FONTS)
                       + "); install one, e.g. apt-get install fonts-wqy-microhei")


def write_csv(flows: Flows, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # counts per province pair only
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["household", "household_name", *flows.codes])
        for code, row in zip(flows.codes, flows.matrix):
            w.writerow([code, short_name(code), *row])


def draw_static(flows: Flows, path: Path, period: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch, Rectangle

    font = cjk_font()
    plt.rcParams["font.family"] = [font]
    plt.rcParams["axes.unicode_minus"] = False
    n = len(flows.codes)
    names = [short_name(c) for c in flows.codes]
    fig, (heat, bars) = plt.subplots(1, 2, figsize=(19, 9.5), gridspec_kw={"width_ratios": [1.25, 1]})
    try:
        data = [[v if v else float("nan") for v in row] for row in flows.matrix]
        peak = max((v for row in flows.matrix for v in row), default=0)
        image = heat.imshow(data, cmap="YlOrRd", norm=LogNorm(vmin=1, vmax=max(peak, 2)), aspect="equal")
        fig.colorbar(image, ax=heat, shrink=0.7, label="流动人口（人，对数色阶）")
        heat.set_xticks(range(n), names, rotation=90, fontsize=8)
        heat.set_yticks(range(n), names, fontsize=8)
        heat.set_xlabel("居住地（流入地）")
        heat.set_ylabel("户籍地（流出地）")
        heat.set_title("户籍地 × 居住地 矩阵", fontsize=12)
        for zone, a, b in flows.zones:
            colour = ZONE_COLOURS[zone]
            heat.add_patch(Rectangle((a - 0.5, a - 0.5), b - a, b - a, fill=False, lw=2.2, ec=colour))
            for pos in (a - 0.5, b - 0.5):
                heat.axhline(pos, color="#888888", lw=0.4)
                heat.axvline(pos, color="#888888", lw=0.4)
            heat.text((a + b - 1) / 2, -1.2, REGION_NAMES[zone], ha="center", va="bottom", color=colour,
                      fontsize=10)
        heat.set_xlim(-0.5, n - 0.5)
        heat.set_ylim(n - 0.5, -2.6)
        top = flows.top()
        labels = [f"{short_name(h)} → {short_name(r)}" for h, r, _ in top][::-1]
        values = [v for _, _, v in top][::-1]
        colours = [ZONE_COLOURS[flows.zone_of(flows.codes.index(r))] for _, r, _ in top][::-1]
        bars.barh(range(len(values)), values, color=colours)
        bars.set_yticks(range(len(values)), labels, fontsize=10)
        for y, v in enumerate(values):
            bars.text(v, y, f" {v}", va="center", fontsize=9)
        bars.set_xlabel("流动人口（人）")
        bars.set_title(f"前 {len(values)} 条流向（按居住地所在区域着色）", fontsize=12)
        bars.legend(handles=[Patch(color=ZONE_COLOURS[z], label=REGION_NAMES[z]) for z, _, _ in flows.zones],
                    loc="upper left", bbox_to_anchor=(1.0, 1.0), title="区域")
        fig.suptitle(f"{title(period)}，共 {flows.total} 人", fontsize=15)
        fig.tight_layout()
        fig.savefig(path, format=path.suffix[1:], dpi=110)
    finally:
        plt.close(fig)


def draw_html(flows: Flows, path: Path, period: str) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [f"{short_name(c)}" for c in flows.codes]
    z = [[v if v else None for v in row] for row in flows.matrix]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.16,
                        subplot_titles=("户籍地 × 居住地 矩阵", f"前 {TOP} 条流向（按居住地所在区域着色）"))
    fig.add_trace(go.Heatmap(z=z, x=names, y=names, colorscale="YlOrRd", colorbar={"title": "人", "x": 0.505, "thickness": 14},
                             hovertemplate="户籍地 %{y} → 居住地 %{x}: %{z} 人<extra></extra>"), row=1, col=1)
    top = flows.top()[::-1]
    fig.add_trace(go.Bar(x=[v for _, _, v in top], y=[f"{short_name(h)} → {short_name(r)}" for h, r, _ in top],
                         orientation="h", marker_color=[ZONE_COLOURS[flows.zone_of(flows.codes.index(r))]
                                                        for _, r, _ in top],
                         hovertemplate="%{y}: %{x} 人<extra></extra>", showlegend=False), row=1, col=2)
    for zone, _, _ in flows.zones:  # legend entries for the bar colours
        fig.add_trace(go.Bar(x=[None], y=[None], name=REGION_NAMES[zone], marker_color=ZONE_COLOURS[zone],
                             showlegend=True, hoverinfo="skip"), row=1, col=2)
    for zone, a, b in flows.zones:
        colour = ZONE_COLOURS[zone]
        fig.add_shape(type="rect", x0=a - 0.5, x1=b - 0.5, y0=a - 0.5, y1=b - 0.5, line={"color": colour, "width": 3},
                      xref="x", yref="y")
        fig.add_annotation(x=(a + b - 1) / 2, y=-1.5, text=REGION_NAMES[zone], showarrow=False,
                           font={"color": colour, "size": 13}, xref="x", yref="y")
    fig.update_yaxes(autorange="reversed", title_text="户籍地（流出地）", row=1, col=1)
    fig.update_xaxes(title_text="居住地（流入地）", tickangle=90, row=1, col=1)
    fig.update_xaxes(title_text="流动人口（人）", row=1, col=2)
    fig.update_layout(title=f"{title(period)}，共 {flows.total} 人", width=1500, height=800,
                      legend={"title": {"text": "区域"}, "orientation": "h", "x": 1.0, "y": -0.1, "xanchor": "right",
                              "yanchor": "top"},
                      font={"family": ", ".join([*CJK_FONTS[:3], "sans-serif"])})
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(html)
