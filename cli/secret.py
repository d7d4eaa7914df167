"""The federation secret for a process already enrolled (issue 12: "distributed at enrolment").

How this works. A node or the national hub enrolled before the secret existed, or whose
``federation.secret`` was lost, gets it without re-enrolling its certificates, in one trip
like enrolment, and the secret never travels in clear:

1. ``yipanqi enrol secret-request -c CONFIG`` (on the process's machine) makes a fresh X25519
   key beside the config (``secret.key``, 0600, stays there) and writes
   ``secret-request.json``: its public half, signed with the process's certified TLS key.
2. ``yipanqi federation secret-seal DIRECTORY REQUEST`` (at the CA) checks the request (the
   certificate is the federation CA's, of the identity named, valid and not revoked; the
   signature verifies; the identity is a node or the national hub, never a regional hub) and
   writes ``<identity>.secret.json``: the secret sealed to that key, for that identity
   (certs/secret.py: X25519, HKDF-SHA256, ChaCha20-Poly1305).
3. ``yipanqi enrol secret-install -c CONFIG FILE`` opens it with ``secret.key`` and writes the
   file the config names (``federation_secret``, default ``federation.secret``), 0600.

File formats (contracts): ``{"yipanqi": "secret-request/1", "identity", "secret_pub",
"tls_crt", "signature"}`` and ``{"yipanqi": "sealed-secret/1", "identity",
"federation_secret": {"epk", "nonce", "ct"}}``. Nothing here prints the secret.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from certs.ca import write_public
from cli.output import Failure, plain
from core.errors import ValidationError
from runtime.config import ConfigError, SecretTarget, load_secret_target

config_option = click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
                             help="The node's or the national hub's config (node.toml / hub.toml).")


def _target(config: str) -> SecretTarget:
    try:
        return load_secret_target(config)
    except ConfigError as err:
        raise Failure(str(err)) from None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise Failure(f"{path}: not {what} ({err})") from None


def _seal_key(target: SecretTarget) -> Path:
    from certs.secret import SEAL_KEY

    return target.path.parent / SEAL_KEY


@click.command("secret-request")
@config_option
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the request (default: secret-request.json beside the config).")
def secret_request(config: str, out: Path | None) -> None:
    """Ask the CA for the federation secret (a process enrolled without it, or that lost it)."""
    from certs.secret import make_request

    target = _target(config)
    try:
        doc = make_request(target.identity, target.tls.key, target.tls.cert, _seal_key(target))
    except ValidationError as err:
        raise Failure(f"{target.path}: {err.field}: {err.reason}") from None
    path = out or target.path.parent / "secret-request.json"
    write_public(path, (json.dumps(doc, indent=2) + "\n").encode())
    click.echo(plain(f"wrote {path} for {target.identity}; send it to the federation CA "
                     f"(`yipanqi federation secret-seal`), keep {_seal_key(target)} here"))


@click.command("secret-seal")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("request", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the sealed secret (default: <identity>.secret.json beside REQUEST).")
def secret_seal(directory: Path, request: Path, out: Path | None) -> None:
    """At the CA: check REQUEST (`enrol secret-request` made it) and seal the federation secret to it.

    DIRECTORY is the federation's (its ca/ holds the CA and the secret). Only province nodes and
    the national hub get it; a regional hub's request is refused."""
    from certs import secret as fed_secret
    from certs.revocation import RevocationList

    doc = _read_json(request, "a secret request")
    try:
        ca_pem = (directory / "ca" / "ca.crt").read_bytes()
    except OSError as err:
        raise Failure(f"{directory}: ca/ca.crt: cannot read ({err.strerror})") from None
    revoked = RevocationList(directory / "revoked.txt").tokens()
    try:
        identity, pub = fed_secret.check_request(doc, ca_pem, revoked, dt.datetime.now(dt.timezone.utc))
        secret = fed_secret.read(directory / "ca" / fed_secret.FILE, "federation secret")
    except ValidationError as err:
        raise Failure(f"{request}: {err.field}: {err.reason}") from None
    path = out or request.parent / f"{identity}.secret.json"
    write_public(path, (json.dumps(fed_secret.seal_request(secret, identity, pub), indent=2) + "\n").encode())
    click.echo(plain(f"sealed the federation secret to {identity}'s request: {path} "
                     "(only that process's secret.key opens it)"))


@click.command("secret-install")
@config_option
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def secret_install(config: str, file: Path) -> None:
    """Open FILE (`federation secret-seal` made it) and write the federation secret (0600) where the config says."""
    from certs import secret as fed_secret

    target = _target(config)
    try:
        secret = fed_secret.open_reply(_read_json(file, "a sealed secret"), _seal_key(target), target.identity)
    except ValidationError as err:
        raise Failure(f"{file}: {err.field}: {err.reason}") from None
    if target.secret.exists():
        try:
            held = fed_secret.read(target.secret, "federation_secret")
        except ValidationError as err:
            raise Failure(f"{target.path}: federation_secret: {err.reason}; move it away first") from None
        if held != secret:
            raise Failure(f"{target.path}: federation_secret: {target.secret} holds another secret; every person "
                          "key depends on it, so it is never replaced here (move it away only if it is wrong)")
        click.echo(plain(f"{target.secret} already holds the federation secret; nothing changed"))
        return
    fed_secret.write(target.secret, secret)
    click.echo(plain(f"installed the federation secret for {target.identity} at {target.secret} (0600)"))
