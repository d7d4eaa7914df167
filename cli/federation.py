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

from cli.output import plain

from certs.ca import create_ca, issue_identity
from core.identity import Identity
from core.provinces import DEFAULT_REGIONS, PROVINCES
from cli.words import plural

HUB_ORDER = ("national", "bohai", "yangtze", "pearl", "northwest")
SECRET_FILE = "federation.secret"  # beside a node's or the national hub's config
CA_SECRET = "federation.secret"  # in DIR/ca/, made with the CA (certs/secret.py)


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


# -- addresses ---------------------------------------------------------------------------
# DIR/federation.json records where every hub and node is dialled ({"hubs": {name: address},
# "nodes": {code: address}}), so `federation sign` can tell each process where its hubs are.
REGISTRY = "federation.json"


def parse_addresses(values: tuple[str, ...] | list[str], option: str = "--address") -> dict[str, str]:
    """``NAME=HOST:PORT`` pairs (NAME a hub name or a province code) -> {name: address}."""
    from certs.enrolment import split_address
    from core.errors import ValidationError

    out: dict[str, str] = {}
    for value in values:
        name, sep, address = value.partition("=")
        if not sep or (name not in HUB_ORDER and name not in PROVINCES):
            raise click.BadParameter(f"{value!r}: write NAME=HOST:PORT, NAME a hub name or a province code",
                                     param_hint=option)
        try:
            split_address(address)
        except ValidationError as err:
            raise click.BadParameter(f"{name}: {err.reason}", param_hint=option) from None
        out[name] = address
    return out


def host_of(address: str) -> str:
    from certs.enrolment import split_address

    return split_address(address)[0]


def cert_hosts(address: str | None) -> tuple[str, ...]:
    """What a TLS certificate names: the host of the address it is dialled at; without one, the
    one-machine default (localhost and 127.0.0.1, where `federation init` puts everything)."""
    if address is None:
        return ("localhost", "127.0.0.1")
    host = host_of(address)
    return ("localhost", host) if host == "127.0.0.1" else (host,)


def load_registry(root: Path) -> dict[str, dict[str, str]]:
    import json

    path = root / REGISTRY
    data = json.loads(path.read_text()) if path.exists() else {}
    return {"hubs": dict(data.get("hubs", {})), "nodes": dict(data.get("nodes", {}))}


def save_registry(root: Path, registry: dict[str, dict[str, str]]) -> None:
    import json

    (root / REGISTRY).write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n")


# -- configs -----------------------------------------------------------------------------
def hub_config(name: str, listen: str, *, national: str | None, regions: dict[str, list[str]],
               revoked: str, operator: dict[str, str], metrics: int | None) -> dict[str, object]:
    """A hub.toml beside its keys (tls.*, sign.*, ca.crt); ``national`` is the upstream's address.
    The national hub's names its federation secret (federation.secret beside it); regional hubs have none."""
    hub: dict[str, object] = {"name": name, "database": "hub.db", "listen": listen, "log_level": "info"}
    if name == "national":
        hub["federation_secret"] = SECRET_FILE
    if metrics is not None:
        hub["metrics_port"] = metrics
    cfg: dict[str, object] = {
        "hub": hub,
        "tls": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key", "revoked": revoked},
        "operator": operator,
        "regions": regions,
    }
    if name != "national":
        assert national is not None
        cfg["upstream"] = {"name": "national", "address": national}
    return cfg


def node_config(code: str, listen: str, *, hubs: list[tuple[str, str]], revoked: str, operator: dict[str, str],
                metrics: int | None) -> dict[str, object]:
    """A node.toml beside its keys and federation.secret; ``hubs`` are (name, address), home hub first."""
    node: dict[str, object] = {"province": code, "database": "node.db", "listen": listen, "log_level": "info",
                               "federation_secret": SECRET_FILE}
    if metrics is not None:
        node["metrics_port"] = metrics
    return {
        "node": node,
        "tls": {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key", "revoked": revoked},
        "signing": {"cert": "sign.crt", "key": "sign.key"},
        "hubs": [{"name": n, "address": a} for n, a in hubs],
        "operator": operator,
    }


def home_hubs(code: str, hubs: dict[str, str]) -> list[tuple[str, str]]:
    """A node's [[hubs]]: its region's hub, then the national hub as fallback."""
    region_of = {p: r for r, ps in DEFAULT_REGIONS.items() for p in ps}
    return [(region_of[code], hubs[region_of[code]]), ("national", hubs["national"])]


def init_federation(root: Path, provinces: list[str], base_port: int,
                    addresses: dict[str, str] | None = None) -> dict[str, Path]:
    """Write the whole federation; returns {identity: config path}.

    ``addresses`` maps a hub name or province code to the HOST:PORT it listens on, is dialled
    at and is certified for; the others listen on 127.0.0.1 (ports from ``base_port``).
    """
    root = root.resolve()
    addresses = addresses or {}
    ca = create_ca(root / "ca")
    from certs import secret as fed_secret

    person_secret = fed_secret.create(root / "ca" / CA_SECRET)
    region_of = {p: r for r, ps in DEFAULT_REGIONS.items() for p in ps}
    regions_needed = sorted({region_of[p] for p in provinces}, key=HUB_ORDER.index)
    hubs = ["national", *regions_needed]
    regions_table = {r: list(ps) for r, ps in DEFAULT_REGIONS.items()}
    written: dict[str, Path] = {}
    revoked = root / "revoked.txt"
    revoked.write_text("# revoked certificate serials and signing key ids, one per line (yipanqi federation revoke)\n")
    hub_addr = {h: addresses.get(h, f"127.0.0.1:{hub_port(base_port, h)}") for h in hubs}
    node_addr = {c: addresses.get(c, f"127.0.0.1:{node_port(base_port, c)}") for c in provinces}
    save_registry(root, {"hubs": hub_addr, "nodes": node_addr})

    def hosts(name: str, address: str) -> tuple[str, ...]:
        return cert_hosts(address if name in addresses else None)

    def operator(scope: str, d: Path) -> dict[str, str]:
        op = root / "operators" / scope
        if not (op / "tls.crt").exists():
            issue_identity(ca, f"operator-{scope}-admin", op)
        return {"ca": "ca.crt", "cert": _rel(op / "tls.crt", d), "key": _rel(op / "tls.key", d)}

    for hub in hubs:
        d = root / "hubs" / hub
        issue_identity(ca, str(Identity.for_hub(hub)), d, hosts=hosts(hub, hub_addr[hub]))
        cfg = hub_config(hub, hub_addr[hub], national=hub_addr["national"], regions=regions_table,
                         revoked=_rel(revoked, d), operator=operator(hub, d),
                         metrics=metrics_port(base_port, str(Identity.for_hub(hub))))
        if hub == "national":
            fed_secret.write(d / SECRET_FILE, person_secret)
        (d / "hub.toml").write_text(tomli_w.dumps(cfg))
        written[str(Identity.for_hub(hub))] = d / "hub.toml"
        if hub == "national":  # the assessment's weights, the national level's to change (yipanqi assess)
            from cli.assess import DEFAULT_WEIGHTS

            (d / "assess.toml").write_text(DEFAULT_WEIGHTS.read_text(encoding="utf-8"), encoding="utf-8")

    for code in provinces:
        d = root / "nodes" / code
        issue_identity(ca, str(Identity.for_province(code)), d, hosts=hosts(code, node_addr[code]))
        cfg = node_config(code, node_addr[code], hubs=home_hubs(code, hub_addr), revoked=_rel(revoked, d),
                          operator=operator(code, d), metrics=metrics_port(base_port, str(Identity.for_province(code))))
        fed_secret.write(d / SECRET_FILE, person_secret)
        (d / "node.toml").write_text(tomli_w.dumps(cfg))
        written[str(Identity.for_province(code))] = d / "node.toml"
    return written


def set_address(root: Path, name: str, address: str) -> list[Path]:
    """Record that hub ``name`` (or province code ``name``) is now at ``address``: in the registry,
    its own config's ``listen`` and every config in ``root`` that dials it. Returns the configs changed."""
    import tomllib

    registry = load_registry(root)
    registry["hubs" if name in HUB_ORDER else "nodes"][name] = address
    save_registry(root, registry)
    changed = []
    for path in [*sorted(root.glob("hubs/*/hub.toml")), *sorted(root.glob("nodes/*/node.toml"))]:
        data = tomllib.loads(path.read_text())
        before = tomli_w.dumps(data)
        own = data.get("hub") or data.get("node") or {}
        if own.get("name", own.get("province")) == name:
            own["listen"] = address
        for hub in [*data.get("hubs", []), *([data["upstream"]] if "upstream" in data else [])]:
            if hub.get("name") == name:
                hub["address"] = address
        if tomli_w.dumps(data) != before:
            path.write_text(tomli_w.dumps(data))
            changed.append(path)
    return changed


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
@click.option("--address", "address", multiple=True, metavar="NAME=HOST:PORT",
              help="Where hub NAME (or province code NAME) listens and is dialled; its certificate names HOST. "
                   "Repeatable.")
def init(directory: Path, provinces: str | None, base_port: int, address: tuple[str, ...]) -> None:
    """Create the CA, certificates, keys and configs for a federation in DIRECTORY.

    The one-machine shortcut (demos, tests): every private key is made here. For a real
    deployment use `yipanqi enrol` on each machine and `yipanqi federation sign` at the CA.
    """
    codes = parse_provinces(provinces)
    addresses = parse_addresses(address)
    stray = [n for n in addresses if n in PROVINCES and n not in codes]
    if stray:
        raise click.BadParameter(f"province {stray[0]} is not in --provinces", param_hint="--address")
    if (directory / "ca" / "ca.key").exists():
        raise click.ClickException(f"{directory} already holds a federation (ca/ca.key exists)")
    written = init_federation(directory, codes, base_port, addresses)
    hubs = sum(1 for k in written if Identity.parse(k).role == "hub")
    click.echo(plain(f"created a federation of {plural(len(codes), 'node')} and {plural(hubs, 'hub')} in {directory}"))


@federation.command("ca")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def ca_command(directory: Path) -> None:
    """Create the federation CA only (DIRECTORY/ca), for enrolment: processes make their own
    keys with `yipanqi enrol` and `yipanqi federation sign` certifies them."""
    from certs.enrolment import ca_fingerprint

    if (directory / "ca" / "ca.key").exists():
        raise click.ClickException(f"{directory} already holds a federation (ca/ca.key exists)")
    ca = create_ca(directory / "ca")
    from certs.secret import create as create_secret

    create_secret(directory / "ca" / CA_SECRET)
    (directory / "revoked.txt").write_text(
        "# revoked certificate serials and signing key ids, one per line (yipanqi federation revoke)\n")
    save_registry(directory, {"hubs": {}, "nodes": {}})
    click.echo(f"created the federation CA and secret in {directory / 'ca'} (keep ca.key and "
               f"{CA_SECRET} offline); "
               f"fingerprint (SHA-256) {ca_fingerprint(ca.cert_pem)}")


@federation.command("issue")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("identity")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the keys (default: the identity's own directory in the federation).")
@click.option("--address", "address", multiple=True, metavar="NAME=HOST:PORT",
              help="The identity's (new) address: NAME is its hub name or province code. Goes into the "
                   "certificate, its config's listen and the configs in DIRECTORY that dial it.")
def issue(directory: Path, identity: str, out: Path | None, address: tuple[str, ...]) -> None:
    """Issue fresh keys and certificates for IDENTITY (certificate rotation).

    The old signing certificate stays known to every peer that saw it, so the
    history it signed still verifies; revoke the old one once the new is live.
    """
    from certs.ca import load_ca
    from core.errors import ValidationError
    from core.identity import Identity

    try:
        ident = Identity.parse(identity)
    except ValidationError as err:
        raise click.BadParameter(err.reason, param_hint="IDENTITY") from None
    addresses = parse_addresses(address)
    if any(name != ident.name for name in addresses) or (addresses and ident.role == "operator"):
        raise click.BadParameter(f"give the address of {identity} only, as {ident.name}=HOST:PORT",
                                 param_hint="--address")
    if out is None:
        sub = {"province": ("nodes", ident.name), "hub": ("hubs", ident.name)}.get(ident.role,
                                                                                   ("operators", ident.scope or ""))
        out = directory / sub[0] / sub[1]
    registry = load_registry(directory)
    known = registry["hubs" if ident.role == "hub" else "nodes"].get(ident.name)
    where = addresses.get(ident.name) or known
    hosts = cert_hosts(where) if where else cert_hosts(None)
    issued = issue_identity(load_ca(directory / "ca"), identity, out, hosts=hosts)
    click.echo(plain(f"issued new keys for {identity} in {issued.dir} (certified for {', '.join(hosts)})"))
    if (ident.role == "province" or identity == "hub-national") and not (issued.dir / SECRET_FILE).exists():
        from certs import secret as fed_secret

        try:
            person_secret = fed_secret.read(directory / "ca" / CA_SECRET, "federation secret")
        except ValidationError as err:
            raise click.ClickException(f"{directory}: {err.field}: {err.reason}") from None
        fed_secret.write(issued.dir / SECRET_FILE, person_secret)
        click.echo(plain(f"wrote the federation secret to {issued.dir / SECRET_FILE} (0600)"))
    if ident.name in addresses:
        for path in set_address(directory, ident.name, addresses[ident.name]):
            click.echo(plain(f"updated {path}"))


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
        click.echo(plain(f"revoked {append(target, token, note)}"))
