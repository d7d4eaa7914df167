"""`yipanqi federation init`: a CA, every certificate and key, and ready-to-run configs.

Layout (a contract):
    DIR/ca/ca.crt, ca.key                     federation root CA (keep ca.key offline)
    DIR/hubs/<hub>/hub.toml + tls.*, sign.*   each hub
    DIR/nodes/<code>/node.toml + tls.*, sign.*  each province node
    DIR/operators/<scope>/tls.crt, tls.key    operator credentials (operator-<scope>-admin)
"""

from __future__ import annotations

from pathlib import Path

import click
import tomli_w

from certs.ca import create_ca, issue_identity
from core.provinces import DEFAULT_REGIONS, PROVINCES

HUB_ORDER = ("national", "bohai", "yangtze", "pearl", "northwest")


def hub_port(base: int, hub: str) -> int:
    return base + HUB_ORDER.index(hub)


def node_port(base: int, code: str) -> int:
    return base + 100 + int(code)


def metrics_port(base: int, identity: str) -> int:
    """Prometheus ports: hubs at base+10.., province XX at base+200+XX."""
    role, _, name = identity.partition("-")
    return base + 10 + HUB_ORDER.index(name) if role == "hub" else base + 200 + int(name)


def _rel(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


def init_federation(root: Path, provinces: list[str], base_port: int) -> dict[str, Path]:
    """Write the whole federation; returns {identity: config path}."""
    root = root.resolve()
    ca = create_ca(root / "ca")
    region_of = {p: r for r, ps in DEFAULT_REGIONS.items() for p in ps}
    regions_needed = sorted({region_of[p] for p in provinces}, key=HUB_ORDER.index)
    hubs = ["national", *regions_needed]
    regions_table = {r: list(ps) for r, ps in DEFAULT_REGIONS.items()}
    written: dict[str, Path] = {}
    ca_crt = root / "ca" / "ca.crt"

    def operator(scope: str) -> dict[str, str]:
        d = root / "operators" / scope
        if not (d / "tls.crt").exists():
            issue_identity(ca, f"operator-{scope}-admin", d)
        return {"ca": str(ca_crt), "cert": str(d / "tls.crt"), "key": str(d / "tls.key")}

    def rel_tls(d: Path, paths: dict[str, str]) -> dict[str, str]:
        return {k: _rel(Path(v), d) for k, v in paths.items()}

    for hub in hubs:
        d = root / "hubs" / hub
        issue_identity(ca, f"hub-{hub}", d)
        cfg: dict[str, object] = {
            "hub": {"name": hub, "database": "hub.db", "listen": f"127.0.0.1:{hub_port(base_port, hub)}",
                    "log_level": "info", "metrics_port": metrics_port(base_port, f"hub-{hub}")},
            "tls": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"},
            "operator": rel_tls(d, operator(hub)),
            "regions": regions_table,
        }
        if hub != "national":
            cfg["upstream"] = {"name": "national", "address": f"127.0.0.1:{hub_port(base_port, 'national')}"}
        (d / "hub.toml").write_text(tomli_w.dumps(cfg))
        written[f"hub-{hub}"] = d / "hub.toml"

    for code in provinces:
        d = root / "nodes" / code
        issue_identity(ca, f"province-{code}", d)
        home = region_of[code]
        cfg = {
            "node": {"province": code, "database": "node.db",
                     "listen": f"127.0.0.1:{node_port(base_port, code)}", "log_level": "info",
                     "metrics_port": metrics_port(base_port, f"province-{code}")},
            "tls": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"},
            "signing": {"cert": "sign.crt", "key": "sign.key"},
            "hubs": [
                {"name": home, "address": f"127.0.0.1:{hub_port(base_port, home)}"},
                {"name": "national", "address": f"127.0.0.1:{hub_port(base_port, 'national')}"},
            ],
            "operator": rel_tls(d, operator(code)),
        }
        (d / "node.toml").write_text(tomli_w.dumps(cfg))
        written[f"province-{code}"] = d / "node.toml"
    return written


def parse_provinces(text: str | None) -> list[str]:
    if not text:
        return sorted(PROVINCES)
    codes = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in codes if c not in PROVINCES]
    if bad:
        raise click.BadParameter(f"unknown province code(s): {', '.join(bad)}", param_hint="--provinces")
    return sorted(set(codes))


@click.group("federation")
def federation() -> None:
    """Create and manage a federation's certificates and configs."""


@federation.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--provinces", help="Comma-separated province codes (default: all 32).")
@click.option("--base-port", type=click.IntRange(1024, 60000), default=7000, show_default=True,
              help="Hubs listen on base..base+4, province XX on base+100+XX; metrics on base+10.. and base+200+XX.")
def init(directory: Path, provinces: str | None, base_port: int) -> None:
    """Create the CA, certificates, keys and configs for a federation in DIRECTORY."""
    codes = parse_provinces(provinces)
    if (directory / "ca" / "ca.key").exists():
        raise click.ClickException(f"{directory} already holds a federation (ca/ca.key exists)")
    written = init_federation(directory, codes, base_port)
    hubs = sum(1 for k in written if k.startswith("hub-"))
    click.echo(f"created a federation of {len(codes)} nodes and {hubs} hubs in {directory}")
