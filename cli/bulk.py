"""`yipanqi person import|export` and `yipanqi stats`: bulk CSV and statistics.

Import streams the file: rows are read lazily and sent on one gRPC stream, the
node writes them in batches and answers row by row, so memory stays flat for
any file size. A bad row is reported with its line number and reason; the
good rows still load; a summary closes the run. Lines and fields are bounded
(``cli.csvcells``): an oversized one is refused as FILE:LINE like any bad row,
and memory stays bounded whatever the line length.

Export writes cells a spreadsheet would run as formulas with a leading quote
(the OWASP rule), and import takes it off again, so export then import gives
the same records back. The exported file holds personal data: created 0600.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Iterator

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli import csvcells
from cli.client import AdminClient
from cli.output import Failure, console, echo_json, plain, text
from cli.person import config_option, person
from store.files import open_private, private_dir
from cli.words import plural
from core.errors import ValidationError
from core.person import FIELDS, parse_field_value
from yipanqi.v1 import admin_pb2 as pb

err_console = console(stderr=True)


def _reader(handle, path: Path) -> tuple[csv.DictReader, csvcells.BoundedLines]:  # type: ignore[no-untyped-def]
    """The CSV reader, its header checked here, before any row is sent (not inside the request stream,
    where an exception only cancels the call)."""
    reader, lines = csvcells.reader(handle)
    try:
        header = reader.fieldnames or []
    except (csvcells.Oversized, csv.Error) as err:
        raise Failure(f"{path}:{lines.line}: header: {err}") from None
    unknown = [c for c in header if c not in FIELDS and c != "person_id"]
    if unknown:
        raise Failure(f"{path}: column {unknown[0]!r}: unknown field (known: person_id, {', '.join(FIELDS)})")
    return reader, lines


def _records(reader: csv.DictReader, lines: csvcells.BoundedLines,
             errors: list[tuple[int, str]]) -> Iterator[tuple[int, dict]]:
    """(line, row) for each row the csv module can read; an oversized line or field, or broken
    quoting, is an error for its line, and reading goes on with the next line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csvcells.Oversized as err:
            errors.append((err.line, str(err)))
            continue
        except csv.Error as err:
            errors.append((lines.line, f"row: {err}"))
            continue
        yield lines.line, row


def _rows(reader: csv.DictReader, lines: csvcells.BoundedLines,
          errors: list[tuple[int, str]]) -> Iterator[pb.WriteRequest]:
    for line, row in _records(reader, lines, errors):
        try:
            if None in row:
                raise ValidationError("row", f"{len(row[None])} more values than columns")  # type: ignore[index]
            missing = sum(1 for v in row.values() if v is None)  # DictReader's filler for a short row
            if missing:
                raise ValidationError("row", f"{missing} fewer values than columns")
            try:  # the file is read with surrogateescape: bytes that are not UTF-8 are refused here, by line
                "".join(v for v in row.values() if isinstance(v, str)).encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError("row", "not valid UTF-8 text") from None
            fields = {k: parse_field_value(k, csvcells.restore(v or "")) for k, v in row.items() if k != "person_id"}
            fields = {k: v for k, v in fields.items() if v is not None}
        except ValidationError as err:
            errors.append((line, str(err)))
            continue
        yield pb.WriteRequest(kind="person", op="create", record_id=csvcells.restore(row.get("person_id") or ""),
                              fields_json=json.dumps(fields, ensure_ascii=False), line=line)


CHUNK_BYTES = 2 * 1024 * 1024  # well below the servers' message limit (runtime.transport.MAX_MESSAGE)


def _chunks(rows: Iterator[pb.WriteRequest], size: int = 500) -> Iterator[pb.ImportChunk]:
    chunk, nbytes = pb.ImportChunk(), 0
    for row in rows:
        chunk.rows.append(row)
        nbytes += row.ByteSize()
        if len(chunk.rows) >= size or nbytes >= CHUNK_BYTES:
            yield chunk
            chunk, nbytes = pb.ImportChunk(), 0
    if chunk.rows:
        yield chunk


@person.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_(config: str, file: Path) -> None:
    """Load person records from a CSV file (header: field names; person_id optional)."""
    client = AdminClient.open(config)
    errors: list[tuple[int, str]] = []
    loaded = 0
    size = file.stat().st_size
    with open(file, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle, Progress(
        TextColumn("importing"), BarColumn(), TextColumn("{task.fields[rows]} rows"), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("import", total=size, rows=0)
        reader, lines = _reader(handle, file)
        for report in client.stream("Import", _chunks(_rows(reader, lines, errors))):
            for result in report.results:
                if result.error:
                    errors.append((result.line, result.error))
                else:
                    loaded += 1
            progress.update(task, completed=handle.buffer.tell() if hasattr(handle, "buffer") else 0,
                            rows=loaded + len(errors))
    for line, why in sorted(errors):
        err_console.print(text(f"{file}:{line}: {why}"), soft_wrap=True)  # one line each, escaped
    click.echo(plain(f"imported {plural(loaded, 'row')}, refused {len(errors)}"))
    if errors:
        sys.exit(1 if not loaded else 2)


@person.command("export")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--include-deleted", is_flag=True)
def export(config: str, file: Path, include_deleted: bool) -> None:
    """Write the records this node holds to a CSV file (streamed; created 0600, it holds personal data).

    Cells a spreadsheet would run as formulas get a leading quote; `person import` takes it off."""
    client = AdminClient.open(config)
    n = 0
    private_dir(file.parent)
    with open_private(file, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["person_id", *FIELDS], extrasaction="ignore")
        writer.writeheader()
        for record in client.records(pb.ListRequest(kind="person", include_deleted=include_deleted)):
            writer.writerow({k: csvcells.neutralise(v) for k, v in record.items()})
            n += 1
    click.echo(plain(f"exported {plural(n, 'record')} to {file}"))


@click.command("stats")
@config_option
@click.option("--by", type=click.Choice(["month", "province"]), help="Only this breakdown.")
@click.option("--json", "as_json", is_flag=True)
def stats(config: str, by: str | None, as_json: bool) -> None:
    """Migrants by residence and household province, inflow/outflow, moves per month, delivery delays."""
    doc = AdminClient.open(config).json("Stats", pb.StatsRequest(by=by or ""))
    if as_json:
        echo_json(doc)
        return
    out = console()
    migrants = doc.get("migrants")
    out.print(text(f"{doc['identity']}: " + ("- migrants" if migrants is None else plural(migrants, "migrant"))
                   + f", {doc.get('cross_province', '-')} cross-province"))
    if "provinces" in doc:
        t = Table(title="by province")
        for col in ("province", "residents", "household", "inflow", "outflow"):
            t.add_column(col)
        for code, row in doc["provinces"].items():
            t.add_row(text(code), text(row["residents"]), text(row["household"]), text(row["inflow"]),
                      text(row["outflow"]))
        out.print(t)
    if "moves_by_month" in doc:
        t = Table(title="moves per month")
        t.add_column("month")
        t.add_column("moves")
        for month, n in doc["moves_by_month"].items():
            t.add_row(text(month), text(n))
        out.print(t)
    if doc.get("delivery"):
        t = Table(title="delivery delay from write to arrival here (双向考核)")
        for col in ("origin", "changes", "p50", "p95"):
            t.add_column(col)
        for origin, row in doc["delivery"].items():
            t.add_row(text(origin), text(row["changes"]), text(f"{row['p50_s']}s"), text(f"{row['p95_s']}s"))
        out.print(t)
