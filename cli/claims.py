"""`yipanqi claims list|accept|refuse`: registrations held apart (core.claims, issue 12).

A create of a held person by a province the record does not involve is a claim: the
node of the household province (and the national hub) lists it; the household
province's operator accepts it (merged by one signed change, which from then on
reaches the claimer) or refuses it (kept for audit, never merged). No claim is
accepted automatically.
"""

from __future__ import annotations

import json

import click
from rich.table import Table

from cli.client import AdminClient
from cli.output import console, echo_json, plain, text, utc
from yipanqi.v2 import admin_pb2 as pb

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="The node's or hub's config (its [operator] section is used).")


@click.group("claims")
def claims() -> None:
    """Registrations by provinces a record did not involve, held until the household province decides."""


@claims.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Also the claims already accepted, merged or refused.")
@click.option("--json", "as_json", is_flag=True)
def claims_list(config: str, show_all: bool, as_json: bool) -> None:
    """Open claims (JSON: claim_id, person_id, claimer, seq, op, received_ms, status, decided_ms, decided_by)."""
    client = AdminClient.open(config)
    rows = json.loads(client.call("Claims", pb.ClaimsRequest(all=show_all)).json)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(plain(f"no {'' if show_all else 'open '}claims on {client.config.identity}"))
        return
    t = Table(title=text(f"claims on {client.config.identity}"))
    for col in ("claim", "person_id", "claimer", "op", "received (UTC)", "status"):
        t.add_column(col, no_wrap=col == "person_id")
    for r in rows:
        t.add_row(str(r["claim_id"]), text(r["person_id"]), text(r["claimer"]), text(r["op"]),
                  utc(r["received_ms"], label=False), text(r["status"]))
    console(min_width=120).print(t)


def _decide(config: str, claim_id: int, accept: bool, as_json: bool) -> None:
    client = AdminClient.open(config)
    row = json.loads(client.call("DecideClaim", pb.ClaimDecision(claim_id=claim_id, accept=accept)).json)
    if as_json:
        echo_json(row)
        return
    click.echo(plain(f"claim {row['claim_id']} by {row['claimer']} on person {row['person_id']}: {row['status']}"))


@claims.command("accept")
@config_option
@click.argument("claim_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
def claims_accept(config: str, claim_id: int, as_json: bool) -> None:
    """Merge claim CLAIM_ID into the record; from then on the record reaches the claimer."""
    _decide(config, claim_id, True, as_json)


@claims.command("refuse")
@config_option
@click.argument("claim_id", type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True)
def claims_refuse(config: str, claim_id: int, as_json: bool) -> None:
    """Drop claim CLAIM_ID: never merged, kept for audit (claims list --all)."""
    _decide(config, claim_id, False, as_json)
