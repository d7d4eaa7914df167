"""`yipanqi assess`: the assessment of both sides (双向考核), one row per province, by score.

How this works: the node or national hub computes the figures in SQL over its store
(Admin.Assess, runtime/assess.py); this command weighs them into one score per province
with the weights file (core.assess), sorts by score and prints a table, JSON or CSV.
The weights file is ``--weights FILE``, else ``assess.toml`` beside the config, else
the copy shipped with yipanqi (cli/assess.toml, which documents the computation).
"""

from __future__ import annotations

import csv
import json
import os
import tomllib
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from cli.client import AdminClient
from core.assess import Weights, ranked
from core.errors import ValidationError
from yipanqi.v2 import admin_pb2 as pb

DEFAULT_WEIGHTS = Path(__file__).with_name("assess.toml")
CSV_COLUMNS = (
    "rank", "province", "name", "region", "score",
    "residence.migrants", "residence.served", "residence.coverage", "residence.certificates_verified",
    "residence.requests.received", "residence.requests.answered_on_time", "residence.requests.overdue",
    "residence.requests.median_answer_days",
    "household.living_elsewhere", "household.certificates_issued", "household.certificates_revoked",
    "household.requests.received", "household.requests.answered_on_time", "household.requests.overdue",
    "household.requests.median_answer_days",
    "federation.delivery_p50_s", "federation.delivery_p95_s", "federation.quarantined",
    "federation.delivery_changes", "federation.quarantined_claiming",
)


def weights_file(config: str, given: str | None) -> Path:
    if given:
        return Path(given)
    beside = Path(config).resolve().parent / "assess.toml"
    return beside if beside.is_file() else DEFAULT_WEIGHTS


def load_weights(path: Path) -> Weights:
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except OSError as err:
        raise click.ClickException(f"{path}: cannot read the weights file ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise click.ClickException(f"{path}: not valid TOML ({err})") from None
    try:
        return Weights.parse(doc, str(path))
    except ValidationError as err:
        raise click.ClickException(str(err)) from None


def _get(doc: dict, dotted: str) -> object:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None  # type: ignore[assignment]  # walks down, may end at None
    return doc


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pct(value: object) -> str:
    return "-" if value is None else f"{100 * float(value):.0f}%"  # type: ignore[arg-type]  # a share: a number


def _answers(q: dict) -> str:
    days = q["median_answer_days"]
    return (f"{q['received']} / {q['answered_on_time']} / {q['overdue']} / "
            f"{'-' if days is None else f'{days:g}d'}")


def table(doc: dict, rows: list[dict]) -> Table:
    period = f"{doc['from'] or 'start'} .. {doc['to'] or doc['today']}"
    t = Table(title=f"双向考核 assessment on {doc['identity']}, {period}",
              caption="requests: received / answered on time / overdue / median days to answer; "
                      "certs: issued / revoked as household side")
    for col in ("#", "province", "score", "migrants here", "coverage", "certs verified", "requests as residence",
                "living elsewhere", "certs", "requests as household", "delivery p50/p95", "quarantined"):
        t.add_column(col, overflow="fold")
    for i, r in enumerate(rows, 1):
        res, hh, fed = r["residence"], r["household"], r["federation"]
        delivery = ("-" if fed["delivery_p50_s"] is None
                    else f"{fed['delivery_p50_s']:g}s/{fed['delivery_p95_s']:g}s")
        t.add_row(str(i), f"{r['province']} {r['name']}", _cell(r["score"]), str(res["migrants"]),
                  _pct(res["coverage"]), str(res["certificates_verified"]), _answers(res["requests"]),
                  str(hh["living_elsewhere"]), f"{hh['certificates_issued']}/{hh['certificates_revoked']}",
                  _answers(hh["requests"]), delivery, str(fed["quarantined"]))
    return t


def write_csv(path: Path, rows: list[dict]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # figures per province, no personal data
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(CSV_COLUMNS)
        for i, r in enumerate(rows, 1):
            w.writerow([i if c == "rank" else ("" if (v := _get(r, c)) is None else v) for c in CSV_COLUMNS])


@click.command("assess")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
              help="The national hub's config (every province) or a node's (itself and its counterparts).")
@click.option("--from", "from_date", default="", metavar="DATE", help="First day of the period (YYYY-MM-DD).")
@click.option("--to", "to_date", default="", metavar="DATE", help="Last day of the period (YYYY-MM-DD).")
@click.option("--weights", "weights", type=click.Path(dir_okay=False), help="The weights file (TOML).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable (documented in README).")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), help="Also write the table as CSV.")
def assess(config: str, from_date: str, to_date: str, weights: str | None, as_json: bool,
           csv_file: Path | None) -> None:
    """Assess both sides (双向考核): residence and household provinces, scored and ranked."""
    w = load_weights(weights_file(config, weights))
    client = AdminClient.open(config)
    doc = client.json("Assess", pb.PeriodRequest(from_date=from_date, to_date=to_date))
    rows = ranked(doc["provinces"], w)
    if csv_file is not None:
        write_csv(csv_file, rows)
    if as_json:
        out = {k: v for k, v in doc.items() if k != "provinces"}
        out["weights"] = {"weights": w.weights, "delivery_target_s": w.delivery_target_s}
        out["provinces"] = rows
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    Console(width=max(Console().width, 160)).print(table(doc, rows))
