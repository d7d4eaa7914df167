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

Import never adds a person twice (runtime.people): a row for a person the node already holds
is "unchanged" when its values equal the record's, else "differing" (reported as FILE:LINE
with the held person_id and the field names, and written only with ``--update``). So a file
can be run again, whole or from ``--from-line N``. The first Ctrl-C stops reading the file,
waits for the answers to the rows already sent (all of them committed, or refused) and says
how many rows were committed and the line to resume from; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator, TextIO

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
from yipanqi.v2 import admin_pb2 as pb

err_console = console(stderr=True)


def _reader(handle: TextIO, path: Path) -> tuple[csv.DictReader, csvcells.BoundedLines]:
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
             errors: list[tuple[int, str]], from_line: int = 0) -> Iterator[tuple[int, dict]]:
    """(line, row) for each row the csv module can read; an oversized line or field, or broken
    quoting, is an error for its line, and reading goes on with the next line. Rows (and errors)
    on lines before ``from_line`` are passed over."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csvcells.Oversized as err:
            if err.line >= from_line:
                errors.append((err.line, str(err)))
            continue
        except csv.Error as err:
            if lines.line >= from_line:
                errors.append((lines.line, f"row: {err}"))
            continue
        if lines.line >= from_line:
            yield lines.line, row


class _Run:
    """Where an import stands: the rows sent and answered, so an interrupted run can say exactly
    what was committed and where to resume."""

    def __init__(self) -> None:
        self.stop = threading.Event()  # set by the first Ctrl-C: read no further rows
        self.read_to = 0  # the last physical line read (refused here, or sent)
        self.sent: dict[int, None] = {}  # lines sent and not yet answered, in order
        self.counts = {"new": 0, "unchanged": 0, "differing": 0, "updated": 0, "refused": 0}
        self.notes: list[tuple[int, str]] = []  # (line, what the operator is told about it)
        self.done = False  # the call is over: nobody waits for room any more
        self._room = threading.Condition()

    def wait_room(self) -> None:
        """Block the sending thread while over ``IN_FLIGHT`` rows are unanswered: rows sent are
        rows the node will commit, so a Ctrl-C stops within that many (not a whole network buffer)."""
        with self._room:
            while len(self.sent) > IN_FLIGHT and not self.stop.is_set() and not self.done:
                self._room.wait(0.5)

    def answered(self, line: int) -> None:
        with self._room:
            self.sent.pop(line, None)
            self._room.notify_all()

    def finish(self) -> None:
        with self._room:
            self.done = True
            self._room.notify_all()

    def resume_line(self) -> int:
        """The first line a re-run must read: the first row not answered, else the line after the last read."""
        return next(iter(self.sent), self.read_to + 1)


def _rows(reader: csv.DictReader, lines: csvcells.BoundedLines,
          errors: list[tuple[int, str]], run: _Run | None = None, from_line: int = 0) -> Iterator[pb.WriteRequest]:
    for line, row in _records(reader, lines, errors, from_line):
        if run is not None:
            if run.stop.is_set():
                return
            run.read_to = line
        try:
            if None in row:
                raise ValidationError("row", f"{len(row[None])} more values than columns")
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
        if run is not None:
            run.sent[line] = None
        yield pb.WriteRequest(kind="person", op="create", record_id=csvcells.restore(row.get("person_id") or ""),
                              fields_json=json.dumps(fields, ensure_ascii=False), line=line)


CHUNK_BYTES = 2 * 1024 * 1024  # well below the servers' message limit (runtime.transport.MAX_MESSAGE)


IN_FLIGHT = 1000  # rows sent and not yet answered, at most (two chunks: the node always has the next)


def _chunks(rows: Iterator[pb.WriteRequest], size: int = 500, update: bool = False,
            run: _Run | None = None) -> Iterator[pb.ImportChunk]:
    chunk, nbytes = pb.ImportChunk(update=update), 0
    for row in rows:
        chunk.rows.append(row)
        nbytes += row.ByteSize()
        if len(chunk.rows) >= size or nbytes >= CHUNK_BYTES:
            if run is not None:
                run.wait_room()
            yield chunk
            chunk, nbytes = pb.ImportChunk(update=update), 0
    if chunk.rows:
        yield chunk


@person.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--update", is_flag=True,
              help="Write the differing fields of people already held here (default: report them, write nothing).")
@click.option("--from-line", "from_line", type=click.IntRange(min=2), default=None, metavar="N",
              help="Read the rows from line N on (the line an interrupted import said to resume from).")
@click.option("--json", "as_json", is_flag=True, help="The closing summary as one JSON object on stdout.")
def import_(config: str, file: Path, update: bool, from_line: int | None, as_json: bool) -> None:
    """Load person records from a CSV file (header: field names; person_id optional).

    A person already held here (same ID number) is never added twice: equal values count as
    unchanged; other values are reported by line and written only with --update. The summary
    counts new, unchanged, differing and refused rows. Ctrl-C stops after the rows already sent
    and prints what was committed and the --from-line to resume from."""
    client = AdminClient.open(config)
    errors: list[tuple[int, str]] = []
    run = _Run()
    size = file.stat().st_size

    def on_sigint(_signum: int, _frame: object) -> None:
        if run.stop.is_set():
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        run.stop.set()
        err_console.print("stopping: reading no further rows; waiting for the rows sent (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    aborted = False
    try:
        with open(file, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle, Progress(
            TextColumn("importing"), BarColumn(), TextColumn("{task.fields[rows]} rows"), TimeRemainingColumn(),
            console=err_console, transient=True,
        ) as progress:
            task = progress.add_task("import", total=size, rows=0)
            reader, lines = _reader(handle, file)
            rows = _rows(reader, lines, errors, run, from_line or 0)
            try:
                for report in client.stream("Import", _chunks(rows, update=update, run=run)):
                    for result in report.results:
                        _answered(run, file, result, update)
                    progress.update(task, completed=handle.buffer.tell() if hasattr(handle, "buffer") else 0,  # type: ignore[attr-defined]  # a real file
                                    rows=sum(run.counts.values()) + len(errors))
            except KeyboardInterrupt:
                aborted = True
    finally:
        run.finish()
        signal.signal(signal.SIGINT, previous)
    run.counts["refused"] += len(errors)
    run.notes += errors
    for line, why in sorted(run.notes):
        err_console.print(text(f"{file}:{line}: {why}"), soft_wrap=True)  # one line each, escaped
    _summary(run, update, as_json, interrupted=run.stop.is_set() or aborted, aborted=aborted)


def _answered(run: _Run, file: Path, result: pb.ImportResult, update: bool) -> None:
    run.answered(result.line)
    if result.error:
        run.counts["refused"] += 1
        run.notes.append((result.line, result.error))
    elif result.outcome in ("differing", "updated"):
        run.counts["differing"] += 1
        fields = ", ".join(result.differing)
        if result.outcome == "updated":
            run.counts["updated"] += 1
            run.notes.append((result.line, f"person {result.record_id} was held here with other values; "
                                           f"updated: {fields}"))
        else:
            run.notes.append((result.line, f"person {result.record_id} is held here with other values in: "
                                           f"{fields}; not written (--update writes them)"))
    elif result.outcome == "unchanged":
        run.counts["unchanged"] += 1
    else:
        run.counts["new"] += 1


def _summary(run: _Run, update: bool, as_json: bool, *, interrupted: bool, aborted: bool) -> None:
    c = run.counts
    committed = c["new"] + c["updated"]
    resume = run.resume_line() if interrupted else None
    if as_json:
        echo_json({**c, "committed": committed, "interrupted": interrupted, "resume_from_line": resume})
    else:
        differing = f"{c['differing']} differing" + (f" ({c['updated']} updated)" if update else "")
        click.echo(plain(f"{c['new']} new, {c['unchanged']} unchanged, {differing}, {c['refused']} refused"))
        if interrupted:
            more = " at least (aborted before every answer came back)" if aborted else ""
            click.echo(plain(f"interrupted: {plural(committed, 'row')} committed{more}; "
                             f"to resume: the same command with --from-line {resume}"))
    if interrupted:
        sys.exit(130)
    if c["refused"] or (c["differing"] and not update):
        sys.exit(1 if not (c["new"] or c["unchanged"] or c["differing"]) else 2)


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
