"""`yipanqi person ...`: add, update, delete, show, list and history of person records.

Everything shown goes through ``cli.output``: values are escaped and never read as markup.

Every PERSON_ID argument takes a whole id or a unique prefix of one (at least 4 characters);
tables show whole ids. `person list` prints as it reads: the server sends pages (a small
first one), and each page is printed when it arrives, so the first rows appear at once
however many records there are; `--limit`/`--after` page through them.
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from cli.client import AdminClient
from cli.output import Failure, console, echo_json, json_text, plain, shown, text, utc
from cli.words import plural
from core.errors import ValidationError
from core.identity import Identity
from core.person import FIELDS, parse_field_value
from yipanqi.v2 import admin_pb2 as pb

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="The node's (or national hub's) config file.")


def _plain(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "_meta"}


def _with_deleted(record: dict) -> dict:
    """What --json prints: the domain fields and person_id, and ``deleted`` (true for a tombstone)."""
    return {**_plain(record), "deleted": bool(record.get("_meta", {}).get("deleted"))}


def _write(config: str, op: str, record_id: str, fields: dict) -> dict:
    client = AdminClient.open(config)
    if record_id:
        record_id = client.resolve(record_id)
    reply = client.call("Write", pb.WriteRequest(kind="person", record_id=record_id, op=op,
                                                 fields_json=json.dumps(fields, ensure_ascii=False)))
    return json.loads(reply.json)


@click.group("person")
def person() -> None:
    """Person (migrant case) records on a node."""


@person.command("add")
@config_option
@click.option("--json", "payload", required=True, help="The record as a JSON object, or '-' to read stdin.")
def add(config: str, payload: str) -> None:
    """Add a person record; prints the new person_id."""
    text = sys.stdin.read() if payload == "-" else payload
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Failure(f"--json: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(fields, dict):
        raise Failure("--json: must be a JSON object of field -> value")
    click.echo(plain(_write(config, "create", "", fields)["person_id"]))


def _sets(pairs: tuple[str, ...]) -> dict:
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise Failure(f"--set {pair!r}: expected FIELD=VALUE")
        try:
            fields[name] = parse_field_value(name, value)
        except ValidationError as err:
            raise Failure(str(err)) from None
    return fields


@person.command("update")
@config_option
@click.argument("person_id")
@click.option("--set", "sets", multiple=True, required=True, metavar="FIELD=VALUE", help="A field to set (repeatable).")
def update(config: str, person_id: str, sets: tuple[str, ...]) -> None:
    """Update fields of a person record (PERSON_ID: the id or a unique prefix)."""
    click.echo(plain(_write(config, "update", person_id, _sets(sets))["person_id"]))


@person.command("delete")
@config_option
@click.argument("person_id")
def delete(config: str, person_id: str) -> None:
    """Delete a person record (a tombstone that syncs like any change)."""
    click.echo(plain(_write(config, "delete", person_id, {})["person_id"]))


@person.command("link")
@config_option
@click.argument("random_key_id")
@click.argument("id_number_or_key")
@click.option("--json", "as_json", is_flag=True, help="Print the linked record as JSON.")
def link(config: str, random_key_id: str, id_number_or_key: str, as_json: bool) -> None:
    """Merge the record RANDOM_KEY_ID (an r- key or a legacy id) into the person keyed by
    ID_NUMBER_OR_KEY (the resident ID, or its p- key): every field version and conflict is kept,
    RANDOM_KEY_ID is deleted, and both changes replicate like any write. Prints the kept person_id."""
    client = AdminClient.open(config)
    if random_key_id.strip() and not random_key_id.strip().startswith(("r-", "p-")):
        random_key_id = client.resolve(random_key_id)
    reply = client.call("Link", pb.LinkRequest(from_id=random_key_id, into=id_number_or_key))
    record = json.loads(reply.json)
    if as_json:
        echo_json(record)
        return
    click.echo(plain(record["person_id"]))


@person.command("show")
@config_option
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: the domain fields, person_id, and deleted (true for a tombstone).")
def show(config: str, person_id: str, as_json: bool) -> None:
    """Show one person record."""
    client = AdminClient.open(config)
    person_id = client.resolve(person_id)
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    if as_json:
        echo_json(_with_deleted(record))
        return
    table = Table(title=text(f"person {person_id}"), show_header=False)
    meta = record.get("_meta", {})
    for name in FIELDS:
        table.add_row(name, text(record.get(name)))
    if meta.get("deleted"):
        table.add_row("deleted", "yes (tombstone)")
    for name, versions in meta.get("conflicts", {}).items():
        cell = text(" | ").join(shown(v["value"]) + text(f" by {v['writer']}") for v in versions)
        table.add_row(text(f"conflict: {name}", style="red"), cell)
    console().print(table)


LIST_COLUMNS = (  # (heading, field, width): fixed, so that the pages printed one by one line up
    ("person_id", "person_id", 36), ("name", "name", 12), ("sex", "sex", 3), ("household", "household_province", 9),
    ("residence", "residence_province", 9), ("city", "residence_city", 12), ("moved_in_on", "moved_in_on", 11),
)


LIST_WIDTH = sum(w for _h, _f, w in LIST_COLUMNS) + 2 * len(LIST_COLUMNS)


def _page_table(rows: list[dict], header: bool) -> Table:
    table = Table(box=None, show_header=header, header_style="bold", pad_edge=False, expand=False)
    for heading, _field, width in LIST_COLUMNS:
        if heading == "person_id":  # whole ids, never cut
            table.add_column(heading, min_width=width, max_width=width, no_wrap=True)
        else:
            table.add_column(heading, width=width, no_wrap=True, overflow="ellipsis")
    for r in rows:
        table.add_row(*(text("" if r.get(f) is None else r[f]) for _h, f, _w in LIST_COLUMNS))  # escaped
    return table


@person.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array of records (with --include-deleted, each says deleted: true or false).")
@click.option("--include-deleted", is_flag=True)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records.")
@click.option("--after", "after", metavar="PERSON_ID", default="",
              help="Only records whose id sorts after this one (the last id of the previous page).")
def list_(config: str, as_json: bool, include_deleted: bool, limit: int | None, after: str) -> None:
    """List the person records this node (or the national database) holds, in id order, printing
    them as they arrive."""
    client = AdminClient.open(config)
    after = after.strip().lower()
    if after and any(c not in "0123456789abcdefghijklmnopqrstuvwxyz-" for c in after):
        raise click.ClickException(f"--after {after!r}: not a person id (p-/r- keys, hex digits and -)")
    pages = client.pages(pb.ListRequest(kind="person", include_deleted=include_deleted, after=after,
                                        limit=limit or 0))
    n, last = 0, None
    if as_json:
        out = sys.stdout
        out.write("[")
        for page in pages:
            for record in page:
                shown_record = _with_deleted(record) if include_deleted else _plain(record)
                out.write(("," if n else "") + json_text(shown_record))
                n += 1
            out.flush()
        out.write("]\n")
        return
    out_console = console(min_width=LIST_WIDTH)  # the fixed columns line the pages up
    out_console.print(text(f"people on {client.config.identity}" + (f", after {after}" if after else "")))
    for page in pages:
        out_console.print(_page_table(page, header=n == 0))
        n += len(page)
        last = page[-1]["person_id"] if page else last
    more = limit is not None and n == limit
    out_console.print(text(plural(n, "record") + (f"; the next page: --after {last}" if more and last else "")))


@person.command("history")
@config_option
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True)
def history(config: str, person_id: str, as_json: bool) -> None:
    """The versions of a record: who wrote what, where and when (times in UTC).

    A province sees the changes sent to it: those made while the record involved it. When
    earlier changes exist (a person who moved here), the output says how many, by whom, and
    where the whole history is (the national hub, the provinces involved before); with --json
    that note goes to stderr."""
    client = AdminClient.open(config)
    person_id = client.resolve(person_id)
    rows = client.json("History", pb.RecordRef(kind="person", record_id=person_id))
    note = _not_here(client, person_id, rows)
    if as_json:
        echo_json(rows)
        if note:
            click.echo(plain(note), err=True)
        return
    table = Table(title=text(f"history of person {person_id} on {client.config.identity}"))
    for col in ("origin", "seq", "op", "operator", "written (UTC)", "via"):
        table.add_column(col, no_wrap=col == "written (UTC)")
    for r in rows:
        table.add_row(text(r["origin"]), text(r["seq"]), text(r["op"]), text(r["operator"] or ""),
                      utc(r["at_ms"], label=False), text(r["via"]))
    out = console(min_width=120)
    out.print(table)
    if note:
        out.print(text(note))


def _not_here(client: AdminClient, person_id: str, rows: list[dict]) -> str | None:
    """Why the history shown is not the whole history, or None when it is.

    A record's vector clock counts every change each province made to it; the changes held
    here are those routed here. Any difference was made before the record involved this
    province, and was never sent to it."""
    if Identity.parse(client.config.identity).role == "hub":
        return None
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    clock = record.get("_meta", {}).get("clock", {})
    held: dict[str, int] = {}
    for r in rows:
        held[r["origin"]] = held.get(r["origin"], 0) + 1
    missing = {origin: n - held.get(origin, 0) for origin, n in sorted(clock.items()) if n > held.get(origin, 0)}
    if not missing:
        return None
    total = sum(missing.values())
    by = ", ".join(f"{origin}: {n}" for origin, n in missing.items())
    were, they = ("was", "it was") if total == 1 else ("were", "they were")
    return (f"Not shown: {plural(total, 'earlier change')} ({by}) {were} made before this record involved "
            f"{client.config.identity}, so {they} never sent here (a province receives only the changes made "
            "while a record involves it). They are held by the provinces the record involved then, and, for "
            "changes that were cross-province, by the national hub "
            f"(yipanqi person history -c <national hub.toml> {person_id}).")
