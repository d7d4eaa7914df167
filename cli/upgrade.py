"""`yipanqi upgrade v2`: a province node signs the v2 baselines of its records (issue 10).

How this works. The upgrade runs on a drained federation (docs/operations.md, "Upgrading to
v2"): with the node stopped and its outbox empty (the hub acknowledged everything), the
node's store gives each record whose household is this province, and that has no v2 delta
yet, one baseline: a create marked legacy carrying the record as it stands (core.baseline,
``Store.baseline_v2``), signed with the node's key and queued in its outbox like any own write.
When the node starts again it sends them to the record's provinces and the national hub.
Re-running writes nothing new (the outbox may then hold the first run's baselines only). Records with an open conflict are listed and left out, with a
non-zero exit: settle them (`conflicts resolve`) and run it again.
"""

from __future__ import annotations

import click

from cli.output import Failure, echo_json, plain
from cli.words import plural
from runtime.config import ConfigError, load_node


@click.group("upgrade")
def upgrade() -> None:
    """One-off store upgrades, run with the node stopped."""


@upgrade.command("v2")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="node.toml")
@click.option("--json", "as_json", is_flag=True,
              help='{"identity", "written", "already", "elsewhere", "conflicted": [{"kind", "record_id"}]}')
def upgrade_v2(config: str, as_json: bool) -> None:
    """Sign the v2 baseline of every record whose household is this province (node stopped, outbox drained)."""
    from certs.secret import read
    from certs.signing import Signer
    from core import canonical
    from core.errors import StoreUnavailable, ValidationError
    from runtime.replica import now_ms
    from runtime.serve import StartupError, check_addresses
    from store.store import Store

    try:
        cfg = load_node(config)
    except ConfigError as err:
        raise Failure(str(err)) from None
    try:
        check_addresses(cfg.listen, None)
    except StartupError as err:
        raise Failure(f"{cfg.identity}: the node seems to be running ({err}); stop it first") from None
    try:  # the config's load checked the secret is there: the person-key re-key runs before the baselines
        secret = read(cfg.federation_secret, "[node].federation_secret")  # type: ignore[arg-type]  # checked at load
        signer = Signer.load(cfg.signing.key, cfg.signing.cert)
    except ValidationError as err:
        raise Failure(f"{cfg.path}: {err}") from None
    if signer.identity != cfg.identity:
        raise Failure(f"{cfg.path}: [signing].cert is for {signer.identity}, not {cfg.identity}")
    try:
        store = Store.open(cfg.database, owner=cfg.identity, person_secret=secret,
                           upgraded=lambda what: click.echo(plain(what), err=True))
    except StoreUnavailable as err:
        raise Failure(f"{cfg.path}: [node].database: the store is unavailable: {err}") from None
    try:
        acked = store.cursor("push")
        backlog, _ = store.outbox_stats(acked)
        oldest = store.outbox(acked, 1)
        # Unacknowledged baselines are this upgrade's own (a re-run, or one cut short): everything
        # before the first of them was acknowledged when it ran.
        first = canonical.loads(oldest[0].body) if oldest else None
        if backlog and not (isinstance(first, dict) and first.get("legacy") is True):
            raise Failure(f"{cfg.identity}: the outbox holds {plural(backlog, 'change')} the hub has not "
                          "acknowledged; start the node, wait until `yipanqi status` shows the outbox at 0, "
                          "stop it and run this again (the upgrade runs on a drained federation)")
        report = store.baseline_v2(seal=signer.seal_batch, now_ms=now_ms())
    finally:
        store.close()
    conflicted = [{"kind": k, "record_id": r} for k, r in report.conflicted]
    if as_json:
        echo_json({"identity": cfg.identity, "written": report.written, "already": report.already,
                   "elsewhere": report.elsewhere, "conflicted": conflicted})
    else:
        click.echo(plain(f"{cfg.identity}: {plural(report.written, 'baseline')} signed, "
                         f"{report.already} already upgraded, {report.elsewhere} left to their household provinces"))
        for c in conflicted:
            click.echo(plain(f"open conflict, not upgraded: {c['kind']} {c['record_id']}"))
    if conflicted:
        raise Failure(f"{plural(len(conflicted), 'record')} with open conflicts not upgraded: settle them with "
                      "`yipanqi conflicts resolve`, then run `yipanqi upgrade v2` again")
