"""`yipanqi node run` and `yipanqi hub run`: foreground processes, logs on stderr."""

from __future__ import annotations

from typing import Any, Callable

import click

from runtime.config import ConfigError, load_hub, load_node
from cli.output import Failure, plain
from cli.words import plural


@click.group("node")
def node() -> None:
    """Run a province node."""


@node.command("run")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="node.toml")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Overrides [node].log_level.")
def node_run(config: str, log_level: str | None) -> None:
    """Run a node in the foreground until SIGTERM/SIGINT."""
    from node.server import run_node

    _run(load_node, run_node, config, log_level)


@click.group("hub")
def hub() -> None:
    """Run a regional or national hub."""


@hub.command("run")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="hub.toml")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Overrides [hub].log_level.")
def hub_run(config: str, log_level: str | None) -> None:
    """Run a hub in the foreground until SIGTERM/SIGINT."""
    from hub.server import run_hub

    _run(load_hub, run_hub, config, log_level)


def _run(load: Callable[[str], Any], run: Callable[[Any], None], config: str, log_level: str | None) -> None:
    """Load the config, check the addresses, run: every start-up failure is one line (no traceback)."""
    from dataclasses import replace

    from runtime.serve import StartupError, check_addresses, starting

    try:
        cfg = load(config)
    except ConfigError as err:
        raise Failure(str(err)) from None
    try:
        with starting(cfg.identity):
            check_addresses(cfg.listen, cfg.metrics_port)
            run(replace(cfg, log_level=log_level or cfg.log_level))
    except StartupError as err:
        raise Failure(str(err)) from None


@node.command("rebuild")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="node.toml")
def node_rebuild(config: str) -> None:
    """Rebuild this node's store from the national database (run it with the node stopped).

    Brings back every cross-province record that involves the province, with
    its history; then start the node as usual and it resumes syncing.
    """
    import datetime as dt

    from certs.keyring import Keyring
    from certs.revocation import RevocationList
    from certs.signing import Signer
    from runtime.replica import Replica
    from node.rebuild import rebuild
    from store.store import Store

    try:
        cfg = load_node(config)
    except ConfigError as err:
        raise Failure(str(err)) from None
    if not any(h.name == "national" for h in cfg.hubs):
        raise click.ClickException(f"{cfg.path}: [[hubs]]: list the national hub to rebuild from it")
    signer = Signer.load(cfg.signing.key, cfg.signing.cert)
    store = Store.open(cfg.database, owner=cfg.identity)
    keyring = Keyring(cfg.tls.ca.read_bytes())
    keyring.add_certificate(signer.cert_der, now=dt.datetime.now(dt.timezone.utc))
    replica = Replica(cfg.identity, store, keyring, RevocationList(cfg.tls.revoked))
    try:
        applied, failures = rebuild(replica, cfg.hubs, cfg.tls, cfg.province)
    except Exception as err:  # noqa: BLE001 - tell the operator plainly
        raise Failure(f"rebuild failed: {err}") from None
    finally:
        store.close()
    for failure in failures:
        click.echo(plain(f"warning: not reached, rebuild again once it is up: {failure}"), err=True)
    click.echo(plain(f"rebuilt {cfg.identity} from the national database and its hubs: {plural(applied, 'change')} applied"))


def _sqlite_path(url: str, key: str) -> str:
    from store.db import sqlite_file

    path = sqlite_file(url)  # without URL options such as ?timeout=
    if path is None:
        raise click.ClickException(f"{key}: {url.split('://')[0]} stores are backed up with their own tools "
                                   "(pg_dump / pg_restore for PostgreSQL); see docs/operations.md")
    return path


@node.command("backup")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="node.toml")
@click.argument("file", type=click.Path(dir_okay=False))
def node_backup(config: str, file: str) -> None:
    """Write a consistent copy of the node's SQLite store to FILE (safe while the node runs).

    FILE holds personal data: it is created 0600 (and a missing directory 0700), whatever the umask.
    """
    import sqlite3
    from pathlib import Path

    from store.files import create_private, private_dir

    cfg = load_node(config)
    src = sqlite3.connect(_sqlite_path(cfg.database, "[node].database"))
    private_dir(Path(file).parent)
    create_private(file)  # before SQLite opens it: its journal files then get 0600 too
    dst = sqlite3.connect(file)
    with dst:
        src.backup(dst)  # SQLite's online backup: a snapshot even while the node writes
    dst.close()
    src.close()
    click.echo(plain(f"backed up {cfg.identity} to {file}"))


@node.command("restore")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="node.toml")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.pass_context
def node_restore(ctx: click.Context, config: str, file: str) -> None:
    """Restore the node's store from a backup (node stopped), then catch up from the national hub.

    Catching up before the node writes again matters: changes it made after
    the backup come back from the federation, so their sequence numbers are
    never reused.
    """
    import shutil
    import sqlite3
    from pathlib import Path

    from store.files import open_private

    cfg = load_node(config)
    path = Path(_sqlite_path(cfg.database, "[node].database"))
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    tmp = path.with_suffix(".restoring")
    with open(file, "rb") as src, open_private(tmp, "wb") as dst:  # the restored store is 0600 too
        shutil.copyfileobj(src, dst)
    (verdict,) = sqlite3.connect(tmp).execute("PRAGMA integrity_check").fetchone()
    if verdict != "ok":
        tmp.unlink()
        raise click.ClickException(f"{file}: not a sound SQLite database ({verdict}); nothing restored")
    tmp.replace(path)
    click.echo(plain(f"restored {cfg.identity} from {file}"))
    ctx.invoke(node_rebuild, config=config)
