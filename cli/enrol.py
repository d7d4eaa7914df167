"""`yipanqi enrol` (on each machine) and `yipanqi federation sign` (at the CA).

How this works. Enrolment is two trips, and no private key travels:

1. ``yipanqi enrol node 44 --address HOST:PORT DIR`` (or ``enrol hub NAME``) makes
   the process's keys in DIR (0600; a node also gets its on-machine operator's key,
   ``DIR/operator/``) and writes ``DIR/request.json``: the certificate signing
   requests and the address. Only that file goes to the CA.
2. ``yipanqi federation sign FEDDIR REQUEST...`` at the CA checks each request,
   issues the certificates (the TLS one names the request's host), records the
   address in ``FEDDIR/federation.json`` and writes ``<identity>.certificates.json``:
   the certificates and the config's federation part (CA certificate, every hub's
   address, the regions, the revocation list). Hubs are signed before nodes, so one
   call can enrol a whole region.
3. ``yipanqi enrol node 44 DIR --certificates FILE`` checks that each certificate
   is the CA's and for the key in DIR, installs them and writes ``DIR/node.toml``.

Nodes and the national hub also get the federation secret (person keys, certs/secret.py):
step 1 makes an X25519 key (``DIR/secret.key``, stays there) and puts its public half in
the request as ``secret_pub``; step 2 seals the secret to it (``federation_secret`` in the
certificates file, ChaCha20-Poly1305); step 3 opens it into ``DIR/federation.secret`` (0600).
Regional hubs never get it.

Operators enrol the same way (``enrol operator SCOPE DIR --label NAME``): a TLS key
and request only, since operators do not author records.

File formats (contracts): request.json ``{"yipanqi": "enrolment-request/1",
"identity", "address", "tls_csr", "sign_csr", "operator": {"identity", "tls_csr"},
"secret_pub"}``; certificates ``{"yipanqi": "certificates/1", "identity", "address", "tls_crt",
"sign_crt", "operator": {"identity", "tls_crt"}, "federation": {"ca_crt", "hubs",
"regions", "revoked"}, "federation_secret": {"epk", "nonce", "ct"}}`` (PEM strings,
base64 for the secret's parts; absent parts are null).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click
import tomli_w

from certs.ca import write_public
from cli.federation import HUB_ORDER, home_hubs, hub_config, load_registry, node_config, save_registry
from core.errors import ValidationError
from core.identity import Identity
from core.provinces import DEFAULT_REGIONS, PROVINCES

REQUEST = "enrolment-request/1"
CERTIFICATES = "certificates/1"


def _fail(where: str, err: ValidationError) -> click.ClickException:
    return click.ClickException(f"{where}: {err.field}: {err.reason}")


# -- on the process's machine -----------------------------------------------------------
def _request(identity: str, directory: Path, address: str | None, operator: str | None) -> Path:
    from certs.enrolment import new_keys, split_address

    if address is not None:
        try:
            split_address(address, "--address")
        except ValidationError as err:
            raise click.BadParameter(err.reason, param_hint="--address") from None
    if (directory / "request.json").exists() or (directory / "tls.key").exists():
        raise click.ClickException(f"{directory} already holds keys; complete it with --certificates FILE")
    csrs = new_keys(identity, directory)
    doc: dict[str, Any] = {"yipanqi": REQUEST, "identity": identity, "address": address,
                           "tls_csr": csrs["tls"].decode(), "sign_csr": csrs.get("sign", b"").decode() or None,
                           "operator": None}
    if _holds_secret(identity):
        from certs.secret import SEAL_KEY, new_seal_key

        doc["secret_pub"] = new_seal_key(directory / SEAL_KEY)
    if operator is not None:
        doc["operator"] = {"identity": operator, "tls_csr": new_keys(operator, directory / "operator")["tls"].decode()}
    path = directory / "request.json"
    write_public(path, (json.dumps(doc, indent=2) + "\n").encode())
    return path


def _holds_secret(identity: str) -> bool:
    """Nodes and the national hub hold the federation secret; regional hubs and operators never."""
    return identity.startswith("province-") or identity == "hub-national"


def _open_secret(file: Path, doc: dict[str, Any], directory: Path) -> bytes:
    """The federation secret the CA sealed to our X25519 key (checked before anything is installed)."""
    from certs.secret import SEAL_KEY, unseal

    try:
        return unseal(doc.get("federation_secret"), directory / SEAL_KEY, doc["identity"])
    except ValidationError as err:
        raise _fail(str(file), err) from None


def _write_secret(directory: Path, secret: bytes) -> None:
    from certs.secret import FILE, write

    write(directory / FILE, secret)


def _read_certificates(file: Path, identity: str) -> dict[str, Any]:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise click.ClickException(f"{file}: not a certificates file ({err})") from None
    if not isinstance(doc, dict) or doc.get("yipanqi") != CERTIFICATES:
        raise click.ClickException(f"{file}: not a certificates file (yipanqi: {CERTIFICATES!r} missing)")
    if doc.get("identity") != identity:
        raise click.ClickException(f"{file}: the certificates are for {doc.get('identity')!r}, not {identity}")
    return doc


def _operator_asked(directory: Path) -> str:
    """The operator identity our own request asked a certificate for."""
    try:
        return str(json.loads((directory / "request.json").read_text())["operator"]["identity"])
    except (OSError, ValueError, KeyError, TypeError):
        raise click.ClickException(f"{directory}: request.json does not name the operator it asked for") from None


def _install(file: Path, doc: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Check every certificate against the CA and our keys, then write them; returns the federation part."""
    from certs.enrolment import ca_fingerprint, check_certificate

    fed = doc.get("federation") or {}
    ca_pem = str(fed.get("ca_crt") or "").encode()
    # (field in the file, its PEM, the directory of its key, whose it must be, file stem)
    parts = [("tls_crt", doc.get("tls_crt"), directory, doc["identity"], "tls")]
    if doc.get("sign_crt") is not None or (directory / "sign.key").exists():
        parts.append(("sign_crt", doc.get("sign_crt"), directory, doc["identity"], "sign"))
    if (directory / "operator" / "tls.key").exists():
        op = doc.get("operator") or {}
        parts.append(("operator.tls_crt", op.get("tls_crt"), directory / "operator", _operator_asked(directory),
                      "tls"))
    for field, pem, where, who, stem in parts:
        if not isinstance(pem, str):
            raise click.ClickException(f"{file}: {field}: missing")
        try:
            check_certificate(ca_pem, pem.encode(), where / f"{stem}.key", who, field)
        except ValidationError as err:
            raise _fail(str(file), err) from None
    for _, pem, where, _, stem in parts:
        write_public(where / f"{stem}.crt", pem.encode())  # type: ignore[union-attr]  # checked present above
        write_public(where / "ca.crt", ca_pem)
    revoked = str(fed.get("revoked") or "# revoked certificate serials and signing key ids, one per line\n")
    write_public(directory / "revoked.txt", revoked.encode())
    click.echo(f"federation CA fingerprint (SHA-256): {ca_fingerprint(ca_pem)}; "
               "check it against the one the national admins publish")
    return fed


def _finish(path: Path, cfg: dict[str, object], state_dir: Path | None) -> None:
    section = "node" if "node" in cfg else "hub"
    if state_dir is not None:
        cfg[section]["state_dir"] = str(state_dir)  # type: ignore[index]  # a TOML table: a dict
    path.write_text(tomli_w.dumps(cfg))
    click.echo(f"wrote {path}")


def _local_address(directory: Path, address: str | None) -> str:
    if address is not None:
        return address
    try:
        return str(json.loads((directory / "request.json").read_text())["address"])
    except (OSError, ValueError, KeyError):
        raise click.UsageError("--address HOST:PORT is needed (no request.json in the directory)") from None


_OPERATOR = {"ca": "ca.crt", "cert": "operator/tls.crt", "key": "operator/tls.key"}
_common = [
    click.option("--address", help="HOST:PORT this process listens on and is dialled at (in its certificate)."),
    click.option("--certificates", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="The file `yipanqi federation sign` returned: install it and write the config."),
    click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on this port."),
    click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                 help="Where the store lives (default: the config's directory), e.g. /var/lib/yipanqi/node."),
]


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        fn = option(fn)
    return fn


@click.group("enrol")
def enrol() -> None:
    """Make a process's keys on its own machine; install the certificates the CA returns."""


@enrol.command("node")
@click.argument("province")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_options
def enrol_node(province: str, directory: Path, address: str | None, certificates: Path | None,
               metrics_port: int | None, state_dir: Path | None) -> None:
    """Enrol the node of PROVINCE in DIRECTORY (keys stay there)."""
    if province not in PROVINCES:
        raise click.BadParameter(f"unknown province code {province!r}", param_hint="PROVINCE")
    identity = str(Identity.for_province(province))
    if certificates is None:
        if address is None:
            raise click.UsageError("--address HOST:PORT is needed to make a request")
        path = _request(identity, directory, address, f"operator-{province}-admin")
        click.echo(f"made the keys of {identity} in {directory}; send {path} to the federation CA")
        return
    doc = _read_certificates(certificates, identity)
    secret = _open_secret(certificates, doc, directory)
    fed = _install(certificates, doc, directory)
    _write_secret(directory, secret)
    hubs = fed.get("hubs") or {}
    try:
        listed = home_hubs(province, hubs)
    except KeyError as err:
        raise click.ClickException(f"{certificates}: federation.hubs: no address for hub {err}") from None
    cfg = node_config(province, _local_address(directory, address), hubs=listed, revoked="revoked.txt",
                      operator=_OPERATOR, metrics=metrics_port)
    _finish(directory / "node.toml", cfg, state_dir)


@enrol.command("hub")
@click.argument("name", type=click.Choice(HUB_ORDER))
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_options
def enrol_hub(name: str, directory: Path, address: str | None, certificates: Path | None,
              metrics_port: int | None, state_dir: Path | None) -> None:
    """Enrol hub NAME in DIRECTORY (keys stay there)."""
    identity = str(Identity.for_hub(name))
    if certificates is None:
        if address is None:
            raise click.UsageError("--address HOST:PORT is needed to make a request")
        path = _request(identity, directory, address, f"operator-{name}-admin")
        click.echo(f"made the keys of {identity} in {directory}; send {path} to the federation CA")
        return
    doc = _read_certificates(certificates, identity)
    secret = _open_secret(certificates, doc, directory) if name == "national" else None
    fed = _install(certificates, doc, directory)
    if secret is not None:
        _write_secret(directory, secret)
    national = (fed.get("hubs") or {}).get("national")
    if name != "national" and not national:
        raise click.ClickException(f"{certificates}: federation.hubs: no address for hub 'national'")
    cfg = hub_config(name, _local_address(directory, address), national=national,
                     regions=fed.get("regions") or {r: list(p) for r, p in DEFAULT_REGIONS.items()},
                     revoked="revoked.txt", operator=_OPERATOR, metrics=metrics_port)
    _finish(directory / "hub.toml", cfg, state_dir)


@enrol.command("operator")
@click.argument("scope")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--label", default="admin", show_default=True, help="Who: operator-SCOPE-LABEL.")
@click.option("--certificates", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The file `yipanqi federation sign` returned.")
def enrol_operator(scope: str, directory: Path, label: str, certificates: Path | None) -> None:
    """An operator's TLS key and request (SCOPE: a province code or a hub name)."""
    from core.identity import Identity

    identity = f"operator-{scope}-{label}"
    try:
        Identity.parse(identity)
    except ValidationError as err:
        raise click.BadParameter(err.reason, param_hint="SCOPE/--label") from None
    if certificates is None:
        path = _request(identity, directory, None, None)
        click.echo(f"made the key of {identity} in {directory}; send {path} to the federation CA")
        return
    _install(certificates, _read_certificates(certificates, identity), directory)
    click.echo(f"installed {directory / 'tls.crt'}: name it (with tls.key and ca.crt) in a config's [operator]")


# -- at the CA ------------------------------------------------------------------------------
def _load_request(path: Path) -> dict[str, Any]:
    from certs.enrolment import split_address
    from core.identity import Identity

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise click.ClickException(f"{path}: not an enrolment request ({err})") from None
    if not isinstance(doc, dict) or doc.get("yipanqi") != REQUEST:
        raise click.ClickException(f"{path}: not an enrolment request (yipanqi: {REQUEST!r} missing)")
    try:
        ident = Identity.parse(str(doc.get("identity")))
        if ident.role != "operator":
            split_address(str(doc.get("address")), "address")
        if ident.role != "operator" and not isinstance(doc.get("sign_csr"), str):
            raise ValidationError("sign_csr", "missing")
    except ValidationError as err:
        raise _fail(str(path), err) from None
    doc["_ident"] = ident
    return doc


def _order(doc: dict[str, Any]) -> tuple[int, int]:
    ident = doc["_ident"]
    if ident.role == "hub":
        return (0, HUB_ORDER.index(ident.name))
    return (1 if ident.role == "province" else 2, 0)


@click.command("sign")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("requests", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write <identity>.certificates.json (default: beside each request).")
@click.option("--days", type=click.IntRange(1, 3650), default=825, show_default=True)
def sign(directory: Path, requests: tuple[Path, ...], out: Path | None, days: int) -> None:
    """At the CA: check REQUESTs (`yipanqi enrol` made them) and return their certificates.

    DIRECTORY is the federation's (its ca/ holds the CA key). Each certificates file
    also carries the federation part of the config: the CA certificate, every hub's
    address, the regions and the revocation list. Nothing is written unless every
    request is good.
    """
    from certs.ca import load_ca
    from certs.enrolment import sign_request, split_address

    docs = sorted(((_load_request(p), p) for p in requests), key=lambda dp: _order(dp[0]))
    registry = load_registry(directory)
    for doc, _ in docs:
        ident = doc["_ident"]
        if ident.role in ("hub", "province"):
            registry["hubs" if ident.role == "hub" else "nodes"][ident.name] = doc["address"]
    for doc, path in docs:  # every hub a process dials must be known before anything is issued
        ident = doc["_ident"]
        needs = (home_hubs(ident.name, {h: h for h in HUB_ORDER}) if ident.role == "province"
                 else [("national", "")] if ident.role == "hub" and ident.name != "national" else [])
        for hub, _ in needs:
            if hub not in registry["hubs"]:
                raise click.ClickException(f"{path}: {ident} dials hub-{hub}, which has not enrolled: "
                                           "sign its request first (or in the same call)")
    ca = load_ca(directory / "ca")
    from certs.secret import read as read_secret

    try:
        person_secret = read_secret(directory / "ca" / "federation.secret", "federation secret")
    except ValidationError as err:
        raise click.ClickException(f"{directory}: {err.field}: {err.reason} "
                                   "(made by `yipanqi federation ca`)") from None
    revoked_file = directory / "revoked.txt"
    fed = {"ca_crt": ca.cert_pem.decode(), "hubs": registry["hubs"],
           "regions": {r: list(p) for r, p in DEFAULT_REGIONS.items()},
           "revoked": revoked_file.read_text() if revoked_file.exists() else None}
    issued = []
    for doc, path in docs:
        ident = doc["_ident"]
        hosts = (split_address(doc["address"])[0],) if doc.get("address") else ()
        try:
            result: dict[str, Any] = {
                "yipanqi": CERTIFICATES, "identity": str(ident), "address": doc.get("address"),
                "tls_crt": sign_request(ca, str(ident), "tls", doc.get("tls_csr") or "", hosts=hosts,
                                        days=days).decode(),
                "sign_crt": (sign_request(ca, str(ident), "sign", doc["sign_csr"], days=days).decode()
                             if ident.role != "operator" else None),
                "operator": None, "federation": fed, "federation_secret": None,
            }
            if _holds_secret(str(ident)):  # sealed to the requester's X25519 key; never to a regional hub
                from certs.secret import seal

                result["federation_secret"] = seal(person_secret, doc.get("secret_pub"), str(ident))
            op = doc.get("operator")
            if op is not None:
                who = str(op.get("identity"))
                from core.identity import Identity

                scope = Identity.parse(who)
                if scope.role != "operator" or scope.scope != ident.name:
                    raise ValidationError("operator.identity", f"{who!r} is not an operator of {ident.name}")
                result["operator"] = {"identity": who,
                                      "tls_crt": sign_request(ca, who, "tls", op.get("tls_csr") or "",
                                                              days=days).decode()}
        except ValidationError as err:
            raise _fail(str(path), err) from None
        issued.append((result, path))
    save_registry(directory, registry)
    for result, path in issued:
        target = (out or path.parent) / f"{result['identity']}.certificates.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_public(target, (json.dumps(result, indent=2) + "\n").encode())
        click.echo(f"signed {result['identity']}{' at ' + result['address'] if result['address'] else ''}: {target}")
