"""`yipanqi node run` and `yipanqi hub run`: foreground processes, logs on stderr."""

from __future__ import annotations

import click

from cli.config import ConfigError, load_hub, load_node


@click.group("node")
def node() -> None:
    """Run a province node."""


@node.command("run")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="node.toml")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Overrides [node].log_level.")
def node_run(config: str, log_level: str | None) -> None:
    """Run a node in the foreground until SIGTERM/SIGINT."""
    from dataclasses import replace

    from node.server import run_node

    try:
        cfg = load_node(config)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    run_node(replace(cfg, log_level=log_level or cfg.log_level))


@click.group("hub")
def hub() -> None:
    """Run a regional or national hub."""


@hub.command("run")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False), help="hub.toml")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Overrides [hub].log_level.")
def hub_run(config: str, log_level: str | None) -> None:
    """Run a hub in the foreground until SIGTERM/SIGINT."""
    from dataclasses import replace

    from hub.server import run_hub

    try:
        cfg = load_hub(config)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    run_hub(replace(cfg, log_level=log_level or cfg.log_level))
