"""`yipanqi status`, `yipanqi conflicts ...` and `yipanqi quarantine ...`.

Everything shown goes through ``cli.output``: values (records, peers' reports, errors) are
escaped and never read as markup; a value of the wrong type is shown as it is, not a crash.
"""

from __future__ import annotations

import json
import time

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


from cli.client import AdminClient
from cli.output import Failure, console, echo_json, plain, shown, text, utc
from cli.words import plural
from yipanqi.v2 import admin_pb2 as pb

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="A node's or hub's config file.")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return plain(seconds)  # a peer's report says what it likes; show it, escaped
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _since(ms: int | None) -> str:
    if ms is None:
        return "-"
    if isinstance(ms, bool) or not isinstance(ms, (int, float)):
        return plain(ms)
    return _age(time.time() - ms / 1000) + " ago"


def _n(value: object) -> Text:
    """A count from a report: '-' when absent."""
    return text("-" if value is None else value)


def _yes(on: object) -> Text:
    return text("yes", style="green") if on else text("no", style="red")


def _link(link: dict | None) -> Text:
    if link is None:
        return text("-")
    if link["connected"]:
        out = text("up", style="green") + text(f" to hub-{link['hub']}")
        if link["fallback"]:
            out += text(" (fallback)", style="yellow")
        return out + text(f" since {_since(link['up_since_ms'])}")
    return text("down", style="red") + text(f" since {_since(link['down_since_ms'])}: {link.get('last_error') or ''}")


def _store(store: dict | None) -> Text:
    """The process's own database: ok, or since when it is down and why."""
    if not store:
        return text("-")
    if store["ok"]:
        return text("ok", style="green") + text(f" ({store['backend']})")
    return text("down", style="red") + text(f" since {_since(store['down_since_ms'])}: {store['last_error'] or ''}"
                                          " (sync paused; figures read from it are not available)")


def _count(value: object, word: str) -> str:
    if value is None:
        return f"- {word}s"
    return plural(value, word) if type(value) is int else plain(f"{value} {word}s")  # a peer's odd report, escaped


def _equivocating(flagged: dict) -> Text:
    """Origins seen signing two different changes with one seq (both kept, merged as concurrent writes)."""
    return text("; ".join(f"{origin} signed two changes as seq {row['seq']}"
                          + (f" (and {row['seqs'] - 1} more seqs)" if row["seqs"] > 1 else "")
                          + f", first seen {_since(row['first_seen_ms'])}" for origin, row in sorted(flagged.items())),
                style="red")


def _parked(parked: dict) -> Text:
    """Verified deltas held back until what they depend on arrives (or their time comes)."""
    first = parked["waiting"][0] if parked["waiting"] else None
    what = (f"; first: {first['origin']} seq {first['seq']} on {first['record_id']}, waiting for "
            + ", ".join(w[:12] for w in first["waiting_for"][:3]) if first else "")
    return text(f"{parked['deltas']} deltas (oldest {_age(parked['oldest_age_s'])}){what}", style="yellow")


def _ranges(ranges: list) -> str:
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in ranges)


def _receipts(doc: dict) -> list:
    """Own changes destinations have not receipted (issue 17), and changes meant for us that never
    arrived: shown only when there are any."""
    parts: list = []
    if doc.get("receipts"):
        r = Table(title=text("own changes not yet receipted, per destination (alert: past [timing].receipt_alert_s)"))
        for col in ("destination", "oldest seq", "age", "custody", "owed", "alert"):
            r.add_column(col)
        for dest, row in doc["receipts"].items():
            r.add_row(text(dest), _n(row["oldest_seq"]), text(_age(row["oldest_age_s"])), text(row["via"] or "-"),
                      _n(row["owed"]), text("ALERT", style="red") if row["alert"] else text("-"))
        parts.append(r)
    if doc.get("gaps"):
        parts.append(text("gaps (changes meant for us that never arrived): ", style="red")
                     + text("; ".join(f"{origin} epoch {g['epoch']}: {_ranges(g['missing'])}"
                                      for origin, rows in doc["gaps"].items() for g in rows)))
    return parts


def render(doc: dict) -> Group:
    if doc["role"] == "node":
        t = Table(title=text(f"{doc['identity']} sync status"), show_header=False)
        t.add_row("store", _store(doc.get("store")))
        t.add_row("hub", _link(doc["hub"]))
        t.add_row("records", _n(doc["records"]))
        t.add_row("last written seq", _n(doc["last_seq"]))
        t.add_row("acknowledged by hub", _n(doc["acked_seq"]))
        t.add_row("outbox backlog", _n(doc['outbox']['changes']) + text(f" (oldest {_age(doc['outbox']['oldest_age_s'])})"))
        t.add_row("open conflicts", _n(doc["conflicts"]))
        t.add_row("quarantined", _n(doc["quarantined"]))
        up = (doc["outbox"].get("quarantined") or {})
        if up.get("changes"):  # ours, refused by a hub: acknowledged, never delivered
            t.add_row("quarantined upstream", text(f"{up['changes']} of our changes (last: {up['last_reason']}, "
                                                   f"at {up['last_hub']}, {_since(up['last_ms'])}); seqs "
                                                   + _ranges(up["ranges"])))
        if doc.get("equivocating"):
            t.add_row("equivocating", _equivocating(doc["equivocating"]))
        if (doc.get("parked") or {}).get("deltas"):
            t.add_row("waiting for history", _parked(doc["parked"]))
        if doc.get("requests"):
            q = doc["requests"]
            t.add_row("requests received", text(f"{q['received_open']} open, {q['received_overdue']} overdue"))
            t.add_row("requests sent", text(f"{q['sent_open']} open, {q['sent_overdue']} overdue"))
        o = Table(title="changes applied per origin")
        for col in ("origin", "last seq", "last written", "lag"):
            o.add_column(col)
        for origin, row in doc["origins"].items():
            o.add_row(text(origin), text(row["last_seq"]), text(_since(row["last_write_ms"])), text(_age(row["lag_s"])))
        return Group(t, o, *_receipts(doc))
    t = Table(title=text(f"{doc['identity']}: log at {plain(doc['log_lsn'])}, {plain(doc['quarantined'])} quarantined"
                         + (f", {_count(doc['records'], 'record')}, {_count(doc['conflicts'], 'conflict')}"
                            if "records" in doc else "")))
    for col in ("peer", "connected", "queue", "oldest", "acked", "last contact"):
        t.add_column(col)
    for row in doc["destinations"]:
        t.add_row(text(row["peer"]), _yes(row["connected"]), text(row["queue"]),
                  text(_age(row["oldest_age_s"])), text(row["acked"]), text(_since(row["last_contact_ms"])))
    parts: list = [t]
    if doc.get("equivocating"):
        parts.append(text("equivocating: ") + _equivocating(doc["equivocating"]))
    if doc.get("federation"):
        f = Table(title="the whole federation (from each province's signed reports; "
                        "* = the province's own word, held = cross-province records counted here)")
        for col in ("prov", "region", "up", "held", "backlog*", "oldest*", "lag*", "conflicts*", "rejects*",
                    "deliver p50/p95 (worst by)", "receive p50/p95*"):
            f.add_column(col)
        for row in doc["federation"]:
            def pair(a: int | None, b: int | None) -> Text:
                return text("-" if a is None else f"{_age(a)}/{_age(b)}")
            by = row.get("delivery_p95_by")
            f.add_row(text(row["province"]), text(row["region"]), _yes(row["connected"]),
                      _n(row.get("national_records")), _n(row["backlog"]),
                      text(_age(row["oldest_age_s"])), text(_age(row["lag_s"])), _n(row["conflicts"]),
                      text(row["rejects"]), pair(row["delivery_p50_s"], row["delivery_p95_s"])
                      + text(f" ({plain(by).removeprefix('province-')})" if by else ""),
                      pair(row["receive_p50_s"], row["receive_p95_s"]))
        parts.append(f)
    parts += _receipts(doc)
    if doc.get("hub_claims"):
        h = Table(title="regional hubs (each hub's own claim, not verified)")
        for col in ("hub", "log at", "quarantined", "last report"):
            h.add_column(col)
        for claim in doc["hub_claims"]:
            h.add_row(text(claim["hub"]), _n(claim["log_lsn"]), _n(claim["quarantined"]),
                      text(_age(claim["last_report_age_s"])))
        parts.append(h)
    up = Table(show_header=False)
    if doc.get("store") is not None:
        up.add_row("store", _store(doc["store"]))
    if doc.get("upstream") is not None:
        up.add_row("upstream", _link(doc["upstream"]))
        q = doc.get("upstream_queue", {})
        up.add_row("upstream queue", _n(q.get("changes")) + text(f" (oldest {_age(q.get('oldest_age_s'))})"))
    if up.row_count:
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
        echo_json(client.status())
        return
    if not watch:
        console().print(render(client.status()))
        return
    with Live(render(client.status()), refresh_per_second=2, console=console()) as live:
        try:
            while True:
                time.sleep(1)
                doc = client.status()
                if as_json:
                    echo_json(doc)
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
        echo_json(rows)
        return
    t = Table(title="quarantined changes")
    for col in ("id", "received", "from", "origin", "seq"):
        t.add_column(col)
    t.add_column("record", min_width=36, no_wrap=True)  # whole ids, never cut
    t.add_column("reason")
    for r in rows:
        t.add_row(text(r["id"]), text(_since(r["received_ms"])), text(r["peer"]), text(r["origin"] or "?"),
                  text(r["seq"] or "?"), text(r["record_id"] or "?"), text(r["reason"]))
    console(min_width=160).print(t)
    waiting = AdminClient.open(config).json("Status", pb.Empty()).get("parked") or {}
    if waiting.get("deltas"):  # verified, not refused: held back until their history arrives
        w = Table(title=f"waiting for their history ({waiting['deltas']} deltas; the first {len(waiting['waiting'])})")
        for col in ("delta", "received", "from", "origin", "seq"):
            w.add_column(col)
        w.add_column("record", min_width=36, no_wrap=True)
        w.add_column("waiting for")
        for e in waiting["waiting"]:
            w.add_row(text(e["delta"][:16]), text(_since(e["received_ms"])), text(e["via"]), text(e["origin"]),
                      text(e["seq"]), text(e["record_id"]), text(", ".join(x[:16] for x in e["waiting_for"])))
        console(min_width=160).print(w)


@quarantine.command("show")
@config_option
@click.argument("entry_id", type=int)
def quarantine_show(config: str, entry_id: int) -> None:
    rows = AdminClient.open(config).json("Quarantine", pb.Empty())
    for r in rows:
        if r["id"] == entry_id:
            echo_json(r, indent=2)
            return
    raise Failure(f"no quarantined change {entry_id}")


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
        echo_json(rows)
        return
    t = Table(title=text(f"open conflicts on {client.config.identity}"))
    t.add_column("person_id", min_width=36, no_wrap=True)  # whole ids, never cut
    for col in ("field", "shown (winner)", "other values"):
        t.add_column(col)
    for r in rows:
        v = r["versions"]
        others = (text("; ").join(shown(x["value"]) + text(f" by {x['writer']}") for x in v[1:]) if len(v) > 1
                  else text(f"breaks a rule: {v[0].get('rule', '')}"))  # a rule that merging broke (core.kinds)
        t.add_row(text(r["person_id"]), text(r["field"]), shown(v[0]["value"]) + text(f" by {v[0]['writer']}"), others)
    console(min_width=140).print(t)


@conflicts.command("show")
@config_option
@click.argument("person_id")
@click.option("--json", "as_json", is_flag=True)
def conflicts_show(config: str, person_id: str, as_json: bool) -> None:
    """One record's open conflicts: every value, who wrote it and when."""
    client = AdminClient.open(config)
    person_id = client.resolve(person_id)
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    found = record["_meta"]["conflicts"]
    if as_json:
        echo_json({"person_id": person_id, "conflicts": found})
        return
    if not found:
        click.echo(plain(f"person {person_id} has no open conflicts"))
        return
    t = Table(title=text(f"open conflicts of person {person_id}"))
    for col in ("field", "value", "written by", "at (UTC)", "shown"):
        t.add_column(col)
    for field, versions in found.items():
        for i, v in enumerate(versions):
            t.add_row(text(field), shown(v["value"]), text(v["writer"]), utc(v["at_ms"], label=False),
                      "yes" if i == 0 else "")
            if "rule" in v:  # a rule between fields that merging concurrent writes broke
                t.add_row(text(field), text(f"breaks a rule: {v['rule']}"), text(""), text(""), "")
    console().print(t)


@conflicts.command("resolve")
@config_option
@click.argument("person_id")
@click.argument("field")
@click.option("--value", "value", help="The value to keep (JSON or plain text). Default: the shown winner.")
def conflicts_resolve(config: str, person_id: str, field: str, value: str | None) -> None:
    """Settle a conflict with a new signed change that dominates both sides."""
    from core.person import parse_field_value

    client = AdminClient.open(config)
    person_id = client.resolve(person_id)
    record = json.loads(client.call("Get", pb.RecordRef(kind="person", record_id=person_id)).json)
    versions = record["_meta"]["conflicts"].get(field)
    if not versions:
        raise Failure(f"{field}: no open conflict on person {person_id}")
    if field == "_deleted":
        keep_deleted = versions[0]["value"] if value is None else value.lower() in ("true", "1", "yes", "deleted")
        op, fields = ("delete", {}) if keep_deleted else ("settle", {})
    else:
        chosen = versions[0]["value"] if value is None else parse_field_value(field, value)
        op, fields = "settle", {field: chosen}
    client.call("Write", pb.WriteRequest(kind="person", record_id=person_id, op=op,
                                         fields_json=json.dumps(fields, ensure_ascii=False)))
    click.echo(plain(f"settled {field} of {person_id}"))
