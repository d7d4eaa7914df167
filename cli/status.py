"""`yipanqi status`, `yipanqi conflicts ...` and `yipanqi quarantine ...`."""

from __future__ import annotations

import json
import time

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from cli.client import AdminClient
from yipanqi.v1 import admin_pb2 as pb

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="A node's or hub's config file.")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _since(ms: int | None) -> str:
    return "-" if ms is None else _age(time.time() - ms / 1000) + " ago"


def _link(link: dict | None) -> str:
    if link is None:
        return "-"
    if link["connected"]:
        extra = " [yellow](fallback)[/]" if link["fallback"] else ""
        return f"[green]up[/] to hub-{link['hub']}{extra} since {_since(link['up_since_ms'])}"
    return f"[red]down[/] since {_since(link['down_since_ms'])}: {link.get('last_error') or ''}"


def render(doc: dict) -> Group:
    if doc["role"] == "node":
        t = Table(title=f"{doc['identity']} sync status", show_header=False)
        t.add_row("hub", _link(doc["hub"]))
        t.add_row("records", str(doc["records"]))
        t.add_row("last written seq", str(doc["last_seq"]))
        t.add_row("acknowledged by hub", str(doc["acked_seq"]))
        t.add_row("outbox backlog", f"{doc['outbox']['changes']} (oldest {_age(doc['outbox']['oldest_age_s'])})")
        t.add_row("open conflicts", str(doc["conflicts"]))
        t.add_row("quarantined", str(doc["quarantined"]))
        if "requests" in doc:
            q = doc["requests"]
            t.add_row("requests received", f"{q['received_open']} open, {q['received_overdue']} overdue")
            t.add_row("requests sent", f"{q['sent_open']} open, {q['sent_overdue']} overdue")
        o = Table(title="changes applied per origin")
        for col in ("origin", "last seq", "last written", "lag"):
            o.add_column(col)
        for origin, row in doc["origins"].items():
            o.add_row(origin, str(row["last_seq"]), _since(row["last_write_ms"]), _age(row["lag_s"]))
        return Group(t, o)
    t = Table(title=f"{doc['identity']}: log at {doc['log_lsn']}, {doc['quarantined']} quarantined"
              + (f", {doc['records']} records, {doc['conflicts']} conflicts" if "records" in doc else ""))
    for col in ("peer", "connected", "queue", "oldest", "acked", "last contact"):
        t.add_column(col)
    for row in doc["destinations"]:
        t.add_row(row["peer"], "[green]yes[/]" if row["connected"] else "[red]no[/]", str(row["queue"]),
                  _age(row["oldest_age_s"]), str(row["acked"]), _since(row["last_contact_ms"]))
    parts: list = [t]
    if doc.get("federation"):
        f = Table(title="the whole federation (from each province's reports)")
        for col in ("prov", "region", "up", "backlog", "oldest", "lag", "conflicts", "rejects",
                    "deliver p50/p95", "receive p50/p95"):
            f.add_column(col)
        for row in doc["federation"]:
            def pair(a, b):  # type: ignore[no-untyped-def]
                return "-" if a is None else f"{_age(a)}/{_age(b)}"
            f.add_row(row["province"], row["region"], "[green]yes[/]" if row["connected"] else "[red]no[/]",
                      "-" if row["backlog"] is None else str(row["backlog"]), _age(row["oldest_age_s"]),
                      _age(row["lag_s"]), "-" if row["conflicts"] is None else str(row["conflicts"]),
                      str(row["rejects"]), pair(row["delivery_p50_s"], row["delivery_p95_s"]),
                      pair(row["receive_p50_s"], row["receive_p95_s"]))
        parts.append(f)
    if doc.get("upstream") is not None:
        up = Table(show_header=False)
        up.add_row("upstream", _link(doc["upstream"]))
        q = doc.get("upstream_queue", {})
        up.add_row("upstream queue", f"{q.get('changes', 0)} (oldest {_age(q.get('oldest_age_s'))})")
        parts.append(up)
    return Group(*parts)


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable status (documented in README).")
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
def status(config: str, as_json: bool, watch: bool) -> None:
    """Sync status of a node or hub."""
    client = AdminClient.open(config)
    if as_json and not watch:
        click.echo(json.dumps(client.status(), ensure_ascii=False))
        return
    if not watch:
        Console().print(render(client.status()))
        return
    with Live(render(client.status()), refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1)
                doc = client.status()
                if as_json:
                    click.echo(json.dumps(doc, ensure_ascii=False))
                else:
                    live.update(render(doc))
        except KeyboardInterrupt:
            pass


@click.group("quarantine")
def quarantine() -> None:
    """Changes this node or hub refused, with the reason."""


@quarantine.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(config: str, as_json: bool) -> None:
    rows = AdminClient.open(config).json("Quarantine", pb.Empty())
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    t = Table(title="quarantined changes")
    for col in ("id", "received", "from", "origin", "seq", "record", "reason"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), _since(r["received_ms"]), r["peer"], r["origin"] or "?", str(r["seq"] or "?"),
                  r["record_id"] or "?", r["reason"])
    Console().print(t)


@quarantine.command("show")
@config_option
@click.argument("entry_id", type=int)
def quarantine_show(config: str, entry_id: int) -> None:
    rows = AdminClient.open(config).json("Quarantine", pb.Empty())
    for r in rows:
        if r["id"] == entry_id:
            click.echo(json.dumps(r, ensure_ascii=False, indent=2))
            return
    raise click.ClickException(f"no quarantined change {entry_id}")


@click.group("conflicts")
def conflicts() -> None:
    """Open conflicts: concurrent edits to the same field."""


@conflicts.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def conflicts_list(config: str, as_json: bool) -> None:
    client = AdminClient.open(config)
    rows = []
    for r in client.records(pb.ListRequest(kind="person", include_deleted=True, conflicted_only=True)):
        for field, versions in r["_meta"]["conflicts"].items():
            rows.append({"person_id": r["person_id"], "field": field, "versions": versions})
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    t = Table(title=f"open conflicts on {client.config.identity}")
    for col in ("person_id", "field", "shown (winner)", "other values"):
        t.add_column(col)
    for r in rows:
        v = r["versions"]
        t.add_row(r["person_id"], r["field"], f"{v[0]['value']!r} by {v[0]['writer']}",
                  "; ".join(f"{x['value']!r} by {x['writer']}" for x in v[1:]))
    Console().print(t)


@conflicts.command("show")
@config_option
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True)
def conflicts_show(config: str, person_id: str, as_json: bool) -> None:
    """One record's open conflicts: every value, who wrote it and when."""
    import datetime as dt

    client = AdminClient.open(config)
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    found = record["_meta"]["conflicts"]
    if as_json:
        click.echo(json.dumps({"person_id": person_id, "conflicts": found}, ensure_ascii=False))
        return
    if not found:
        click.echo(f"person {person_id} has no open conflicts")
        return
    t = Table(title=f"open conflicts of person {person_id}")
    for col in ("field", "value", "written by", "at", "shown"):
        t.add_column(col)
    for field, versions in found.items():
        for i, v in enumerate(versions):
            when = dt.datetime.fromtimestamp(v["at_ms"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            t.add_row(field, repr(v["value"]), v["writer"], when, "yes" if i == 0 else "")
    Console().print(t)


@conflicts.command("resolve")
@config_option
@click.argument("person_id")
@click.argument("field")
@click.option("--value", "value", help="The value to keep (JSON or plain text). Default: the shown winner.")
def conflicts_resolve(config: str, person_id: str, field: str, value: str | None) -> None:
    """Settle a conflict with a new signed change that dominates both sides."""
    from core.person import parse_field_value

    client = AdminClient.open(config)
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    versions = record["_meta"]["conflicts"].get(field)
    if not versions:
        raise click.ClickException(f"{field}: no open conflict on person {person_id}")
    if field == "_deleted":
        keep_deleted = versions[0]["value"] if value is None else value.lower() in ("true", "1", "yes", "deleted")
        op, fields = ("delete", {}) if keep_deleted else ("settle", {})
    else:
        chosen = versions[0]["value"] if value is None else parse_field_value(field, value)
        op, fields = "settle", {field: chosen}
    client.call("Write", pb.WriteRequest(kind="person", record_id=person_id, op=op,
                                         fields_json=json.dumps(fields, ensure_ascii=False)))
    click.echo(f"settled {field} of {person_id}")
