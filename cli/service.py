"""`yipanqi service ...`: record a service given to a person, and list a person's services."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from cli.client import AdminClient
from core.service import TYPE_NAMES, TYPES
from yipanqi.v2 import admin_pb2 as pb

_GIVEN = [t for t in TYPES if t != "certificate_check"]  # that one is recorded by `certificate verify -c`


@click.group("service")
def service() -> None:
    """Service records (孕检 and the free services) that travel with the person."""


@service.command("add")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
              help="The node of the province that gave the service.")
@click.argument("person_id")
@click.option("--type", "type_", required=True, help=f"One of {', '.join(_GIVEN)}.")
@click.option("--on", "on", required=True, help="The date it was given, YYYY-MM-DD.")
@click.option("--result", default=None, help="What came of it (free text, at most 256 characters).")
def add(config: str, person_id: str, type_: str, on: str, result: str | None) -> None:
    """Record a service given to PERSON_ID here; prints the service id."""
    reply = AdminClient.open(config).call("AddService", pb.AddServiceRequest(person_id=person_id, type=type_, on=on,
                                                                             result=result or ""))
    click.echo(reply.record_id)


@service.command("list")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
              help="A node's or the national hub's config.")
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, oldest first.")
def list_(config: str, person_id: str, as_json: bool) -> None:
    """A person's services, oldest first, at any replica that holds the person."""
    client = AdminClient.open(config)
    rows = client.json("ListServices", pb.RecordRef(kind="service", record_id=person_id))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"services of {person_id} at {client.config.identity}")
    for col in ("on", "type", "by province", "result", "service_id"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["on"], f"{r['type']} {TYPE_NAMES.get(r['type'], '')}", r["provider_province"],
                      r.get("result") or "", r["service_id"])
    Console().print(table)
