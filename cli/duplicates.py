"""`yipanqi duplicates`: the likely duplicate people a node or the national hub holds.

The node finds them in SQL (store.duplicates) and streams them in pages; each is printed as it
arrives: both person_ids and why (the same ID number under two ids, or the same name, birth
date and sex with different ID numbers). Neither the names nor the numbers are printed: the
operator looks at a pair with `person show`. Settle one with `person update` or `person delete`.
"""

from __future__ import annotations

import json
import sys

import click

from cli.client import AdminClient
from cli.output import console, json_text, plain, text
from cli.person import config_option
from cli.words import plural
from yipanqi.v2 import admin_pb2 as pb

WHY = {"same_id_number": "same ID number under two ids",
       "same_name_birth_date_sex": "same name, birth date and sex; different ID numbers"}


@click.command("duplicates")
@config_option
@click.option("--json", "as_json", is_flag=True,
              help='A JSON array of {"person_ids": [first, second], "why": "same_id_number" | '
                   '"same_name_birth_date_sex"}.')
def duplicates(config: str, as_json: bool) -> None:
    """Likely duplicate people held here: the same ID number under two ids, and the same name,
    birth date and sex with different ID numbers. Each line: both person_ids and why."""
    client = AdminClient.open(config)
    n = 0
    out = console()
    if as_json:
        sys.stdout.write("[")
    else:
        out.print(text(f"likely duplicates on {client.config.identity}"))
    for reply in client.stream("Duplicates", pb.Empty()):
        for pair in json.loads(reply.json):
            if as_json:
                sys.stdout.write(("," if n else "") + json_text(pair))
            else:
                first, second = pair["person_ids"]
                out.print(text(f"{first}  {second}  {WHY.get(pair['why'], pair['why'])}"), soft_wrap=True)
            n += 1
        sys.stdout.flush()
    if as_json:
        sys.stdout.write("]\n")
    else:
        click.echo(plain(plural(n, "likely duplicate")))
