"""`yipanqi person ...`: add, update, delete, show, list and history of person records.

Everything shown goes through ``cli.output``: values are escaped and never read as markup.
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from cli.client import AdminClient
from cli.output import Failure, console, echo_json, json_text, plain, shown, text, utc
from core.errors import ValidationError
from core.person import FIELDS, parse_field_value
from yipanqi.v1 import admin_pb2 as pb

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="The node's (or national hub's) config file.")


def _plain(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "_meta"}


def _write(config: str, op: str, record_id: str, fields: dict) -> dict:
    client = AdminClient.open(config)
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
        raise Failure(f"--json: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
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
    """Update fields of a person record."""
    _write(config, "update", person_id, _sets(sets))
    click.echo(plain(person_id))


@person.command("delete")
@config_option
@click.argument("person_id")
def delete(config: str, person_id: str) -> None:
    """Delete a person record (a tombstone that syncs like any change)."""
    _write(config, "delete", person_id, {})
    click.echo(plain(person_id))


@person.command("show")
@config_option
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the domain fields plus person_id.")
def show(config: str, person_id: str, as_json: bool) -> None:
    """Show one person record."""
    client = AdminClient.open(config)
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    if as_json:
        echo_json(_plain(record))
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


@person.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="A JSON array of records.")
@click.option("--include-deleted", is_flag=True)
def list_(config: str, as_json: bool, include_deleted: bool) -> None:
    """List the person records this node (or the national database) holds."""
    client = AdminClient.open(config)
    rows = client.records(pb.ListRequest(kind="person", include_deleted=include_deleted))
    if as_json:
        out = sys.stdout
        out.write("[")
        for i, record in enumerate(rows):
            out.write(("," if i else "") + json_text(_plain(record)))
        out.write("]\n")
        return
    table = Table(title=text(f"people on {client.config.identity}"))
    for col in ("person_id", "name", "sex", "household", "residence", "city", "moved_in_on"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(text(r.get(f)) for f in ("person_id", "name", "sex", "household_province",
                                                 "residence_province", "residence_city", "moved_in_on")))
    console().print(table)


@person.command("history")
@config_option
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True)
def history(config: str, person_id: str, as_json: bool) -> None:
    """The versions of a record: who wrote what, where and when."""
    client = AdminClient.open(config)
    rows = client.json("History", pb.RecordRef(kind="person", record_id=person_id))
    if as_json:
        echo_json(rows)
        return
    table = Table(title=text(f"history of person {person_id}"))
    for col in ("origin", "seq", "op", "operator", "written", "via"):
        table.add_column(col)
    for r in rows:
        table.add_row(text(r["origin"]), text(r["seq"]), text(r["op"]), text(r["operator"]), utc(r["at_ms"]),
                      text(r["via"]))
    console().print(table)
