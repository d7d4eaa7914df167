"""`yipanqi request send|list|show|answer|close`: requests between provinces (协查 / 通报).

How this works: each command is one Admin call to the operator's own node (Write with
kind ``request``, or Get / List); the node fills in the sender, the side, the dates and
the state, and refuses what its province may not do (core.request). ``list`` and
``show`` mark a request overdue when it is open past its due date (today's local date).
"""

from __future__ import annotations

import datetime as dt
import json

import click
from rich.table import Table
from rich.text import Text

from cli.client import AdminClient
from cli.output import console, echo_json, plain
from cli.output import text as cell
from core.request import DEFAULT_DUE_DAYS, MAX_DUE_DAYS, overdue
from yipanqi.v2 import admin_pb2 as pb

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="A node's config file (list and show also work on the national hub).")


def _write(config: str, op: str, record_id: str, fields: dict) -> dict:
    client = AdminClient.open(config)
    reply = client.call("Write", pb.WriteRequest(kind="request", record_id=record_id, op=op,
                                                 fields_json=json.dumps(fields, ensure_ascii=False)))
    return json.loads(reply.json)


def _view(record: dict, today: dt.date) -> dict:
    out = {k: v for k, v in record.items() if k != "_meta"}
    out["overdue"] = overdue(out, today)
    return out


@click.group("request")
def request() -> None:
    """Requests between provinces about a person: send, list, show, answer, close."""


@request.command("send")
@config_option
@click.option("--to", "to", required=True, metavar="PROVINCE", help="The receiving province (the person's other one).")
@click.option("--person", "person_id", required=True, metavar="PERSON_ID")
@click.option("--subject", required=True, metavar="TEXT")
@click.option("--body", default=None, metavar="TEXT")
@click.option("--due-days", "due_days", type=click.IntRange(0, MAX_DUE_DAYS), default=DEFAULT_DUE_DAYS,
              show_default=True, help="Days until the answer is due.")
def send(config: str, to: str, person_id: str, subject: str, body: str | None, due_days: int) -> None:
    """Send a request to another province; prints the request id."""
    fields: dict[str, object] = {"to_province": to, "person_id": person_id, "subject": subject, "due_days": due_days}
    if body is not None:
        fields["body"] = body
    click.echo(plain(_write(config, "create", "", fields)["request_id"]))


@request.command("answer")
@config_option
@click.argument("request_id")
@click.option("--text", required=True, metavar="TEXT", help="The answer.")
def answer(config: str, request_id: str, text: str) -> None:
    """Answer a request sent to this province (only the receiving province may)."""
    r = _write(config, "update", request_id, {"state": "answered", "answer": text})
    click.echo(plain(f"answered {r['request_id']} on {r['answered_on']}"))


@request.command("close")
@config_option
@click.argument("request_id")
def close(config: str, request_id: str) -> None:
    """Close a request this province sent (only the sender may)."""
    r = _write(config, "update", request_id, {"state": "closed"})
    click.echo(plain(f"closed {r['request_id']} on {r['closed_on']}"))


@request.command("list")
@config_option
@click.option("--open", "only_open", is_flag=True, help="Only requests still awaiting an answer.")
@click.option("--overdue", "only_overdue", is_flag=True, help="Only open requests past their due date.")
@click.option("--json", "as_json", is_flag=True)
def list_(config: str, only_open: bool, only_overdue: bool, as_json: bool) -> None:
    """Requests to and from this province (on the national hub: all of them)."""
    client = AdminClient.open(config)
    today = dt.date.today()
    rows = [_view(r, today) for r in client.records(pb.ListRequest(kind="request"))]
    if only_open:
        rows = [r for r in rows if r.get("state") == "open"]
    if only_overdue:
        rows = [r for r in rows if r["overdue"]]
    rows.sort(key=lambda r: (str(r.get("sent_on")), r["request_id"]))
    if as_json:
        echo_json(rows)  # exact values; what a terminal would act on as \uXXXX escapes
        return
    # Values come from peers too: every cell is escaped Text, never markup (cli.output).
    t = Table(title=cell(f"requests on {client.config.identity}"))
    for col in ("request_id", "from", "to", "person_id", "subject", "sent", "due", "state", "answered"):
        t.add_column(col, overflow="fold")
    for r in rows:
        state = cell(r.get("state")) + (Text(" (overdue)", style="red") if r["overdue"] else Text(""))
        cells = [r["request_id"], r.get("from_province"), r.get("to_province"), r.get("person_id"), r.get("subject"),
                 r.get("sent_on"), r.get("due_on")]
        t.add_row(*(cell(c) for c in cells), state, cell(r.get("answered_on") or "-"))
    console().print(t)


@request.command("show")
@config_option
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
def show(config: str, request_id: str, as_json: bool) -> None:
    """One request, with its answer."""
    client = AdminClient.open(config)
    record = json.loads(client.call("Get", pb.RecordRef(kind="request", record_id=request_id)).json)
    r = _view(record, dt.date.today())
    if as_json:
        echo_json(r)
        return
    t = Table(title=cell(f"request {request_id}"), show_header=False)
    for key in ("from_province", "to_province", "to_side", "person_id", "subject", "body", "sent_on", "due_on",
                "state", "overdue", "answer", "answered_on", "closed_on"):
        if r.get(key) is not None:
            t.add_row(key, cell(r[key]))
    console().print(t)
