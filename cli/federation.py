"""`yipanqi federation init`: a CA, every certificate and key, and ready-to-run configs.

Layout (a contract):
    DIR/ca/ca.crt, ca.key                     federation root CA (keep ca.key offline)
    DIR/hubs/<hub>/hub.toml + tls.*, sign.*   each hub
    DIR/hubs/national/assess.toml              the assessment's weights (yipanqi assess)
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
    revoked = root / "revoked.txt"
    revoked.write_text("# revoked certificate serials and signing key ids, one per line (yipanqi federation revoke)\n")

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
            "tls": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key", "revoked": _rel(revoked, d)},
            "operator": rel_tls(d, operator(hub)),
            "regions": regions_table,
        }
        if hub != "national":
            cfg["upstream"] = {"name": "national", "address": f"127.0.0.1:{hub_port(base_port, 'national')}"}
        (d / "hub.toml").write_text(tomli_w.dumps(cfg))
        written[f"hub-{hub}"] = d / "hub.toml"
        if hub == "national":  # the assessment's weights, the national level's to change (yipanqi assess)
            from cli.assess import DEFAULT_WEIGHTS

            (d / "assess.toml").write_text(DEFAULT_WEIGHTS.read_text(encoding="utf-8"), encoding="utf-8")

    for code in provinces:
        d = root / "nodes" / code
        issue_identity(ca, f"province-{code}", d)
        home = region_of[code]
        cfg = {
            "node": {"province": code, "database": "node.db",
                     "listen": f"127.0.0.1:{node_port(base_port, code)}", "log_level": "info",
                     "metrics_port": metrics_port(base_port, f"province-{code}")},
            "tls": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key", "revoked": _rel(revoked, d)},
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


@federation.command("issue")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("identity")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the keys (default: the identity's own directory in the federation).")
def issue(directory: Path, identity: str, out: Path | None) -> None:
    """Issue fresh keys and certificates for IDENTITY (certificate rotation).

    The old signing certificate stays known to every peer that saw it, so the
    history it signed still verifies; revoke the old one once the new is live.
    """
    from certs.ca import load_ca
    from core.identity import Identity

    ident = Identity.parse(identity)
    if out is None:
        sub = {"province": ("nodes", ident.name), "hub": ("hubs", ident.name)}.get(ident.role,
                                                                                   ("operators", ident.scope or ""))
        out = directory / sub[0] / sub[1]
    issued = issue_identity(load_ca(directory / "ca"), identity, out)
    click.echo(f"issued new keys for {identity} in {issued.dir}")


@federation.command("revoke")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("what")
@click.option("--note", default="revoked", help="Why (kept as a comment in the list).")
def revoke(directory: Path, what: str, note: str) -> None:
    """Revoke a certificate (a .crt file, a hex serial) or a signing key id (ed25519:...).

    Appends to DIRECTORY/revoked.txt, the list every node and hub reads
    ([tls].revoked); running processes pick it up without a restart.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certs.ca import fingerprint_key_id
    from certs.revocation import append

    target = directory / "revoked.txt"
    path = Path(what)
    if path.is_file():
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        tokens = [format(cert.serial_number, "x")]
        if path.name.startswith("sign"):
            tokens.append(fingerprint_key_id(cert.public_bytes(Encoding.DER)))
    else:
        tokens = [what]
    for token in tokens:
        click.echo(f"revoked {append(target, token, note)}")
