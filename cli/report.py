"""`yipanqi report flows`: where migrants come from and go to, drawn (PNG, SVG or HTML) and as CSV.

How this works: the national hub (or a node, for the records it holds) counts migrants per
(household province, residence province) in SQL (Admin.Flows); cli/flowchart.py draws the
matrix as a heat map and the top flows as a ranked bar chart, in Chinese, with the four
regional zones marked. ``--csv`` writes the matrix itself.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.client import AdminClient
from cli.flowchart import Flows, draw_html, draw_static, write_csv
from yipanqi.v2 import admin_pb2 as pb

FORMATS = (".png", ".svg", ".html")


@click.group("report")
def report() -> None:
    """Reports drawn from the national database (or a node's own records)."""


@report.command("flows")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
              help="The national hub's config (or a node's).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="FLOWS.png, FLOWS.svg or FLOWS.html.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the matrix as CSV.")
@click.option("--from", "from_date", default="", metavar="DATE", help="Only migrants who moved in on or after DATE.")
@click.option("--to", "to_date", default="", metavar="DATE", help="Only migrants who moved in on or before DATE.")
def flows(config: str, out: Path | None, csv_file: Path | None, from_date: str, to_date: str) -> None:
    """Draw the household x residence matrix and the top flows."""
    if out is None and csv_file is None:
        raise click.UsageError("give --out FILE (.png, .svg or .html) and/or --csv FILE")
    if out is not None and out.suffix.lower() not in FORMATS:
        raise click.BadParameter(f"{out}: the name must end in {', '.join(FORMATS)}", param_hint="--out")
    doc = AdminClient.open(config).json("Flows", pb.PeriodRequest(from_date=from_date, to_date=to_date))
    matrix = Flows.of(doc["flows"])
    period = f"{doc['from'] or '最早'} 至 {doc['to'] or '今'}"
    if csv_file is not None:
        write_csv(matrix, csv_file)
        click.echo(f"wrote the {len(matrix.codes)}x{len(matrix.codes)} matrix to {csv_file}")
    if out is not None:
        try:
            (draw_html if out.suffix.lower() == ".html" else draw_static)(matrix, out, period)
        except RuntimeError as err:
            raise click.ClickException(str(err)) from None
        click.echo(f"drew {matrix.total} migrants in {len(matrix.top())} top flows to {out}")
