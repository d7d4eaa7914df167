"""`yipanqi certificate ...`: issue, verify, revoke and render the electronic 婚育证明.

issue and revoke talk to the household province's node; verify works offline with
only the CA certificate (and, with -c, also asks that node or the national hub for
the certificate's current status); render makes a printable page with a QR code
that holds the whole signed document.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from certs import certdoc as signed
from core.certdoc import CertificateRefused
from yipanqi.v2 import admin_pb2 as pb

if TYPE_CHECKING:
    from cli.client import AdminClient


def _client(config: str) -> AdminClient:
    from cli.client import AdminClient  # the offline paths need no gRPC

    return AdminClient.open(config)


def write_private(path: Path, data: bytes) -> None:
    """A new file only the owner can read (the document holds personal data)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"--out: {path} already exists; not overwriting it") from None
    except OSError as exc:
        raise click.ClickException(f"--out: cannot create {path} ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def read_document(file: str) -> bytes:
    """A document file, '-' for stdin, or the document text itself (what a QR scanner gives)."""
    if file.lstrip().startswith("{"):
        return file.encode("utf-8")
    if file == "-":
        return sys.stdin.buffer.read(64 * 1024)
    try:
        return Path(file).read_bytes()[:64 * 1024]
    except OSError as exc:
        raise click.ClickException(f"FILE: cannot read {file} ({exc.strerror})") from None


@click.group("certificate")
def certificate() -> None:
    """The electronic marriage-and-childbirth certificate (婚育证明)."""


@certificate.command("issue")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
              help="The household province's node config.")
@click.argument("person_id")
@click.option("--valid-years", type=click.IntRange(1, 10), default=3, show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the document (default: certificate-<CERT_NO>.json here).")
def issue(config: str, person_id: str, valid_years: int, out: Path | None) -> None:
    """Issue PERSON_ID's certificate (household province only); prints the certificate number."""
    if out is not None and out.exists():
        raise click.ClickException(f"--out: {out} already exists; not overwriting it")
    reply = _client(config).call("IssueCertificate", pb.IssueCertificateRequest(person_id=person_id,
                                                                                valid_years=valid_years))
    write_private(out or Path(f"certificate-{reply.cert_no}.json"), bytes(reply.document))
    click.echo(reply.cert_no)


@certificate.command("revoke")
@click.option("-c", "--config", "config", required=True, type=click.Path(dir_okay=False),
              help="The household province's node config.")
@click.argument("cert_no")
@click.option("--reason", required=True, help="Why it is revoked (kept with the record).")
def revoke(config: str, cert_no: str, reason: str) -> None:
    """Revoke a certificate (household province only); every replica learns it."""
    result = _client(config).json("RevokeCertificate", pb.RevokeCertificateRequest(cert_no=cert_no, reason=reason))
    click.echo(f"{result['cert_no']} revoked")


def _refuse(err: CertificateRefused) -> None:
    click.echo(f"refused ({err.why}): {err}", err=True)
    sys.exit(1)


@certificate.command("verify")
@click.argument("file")
@click.option("--ca", "ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The federation CA certificate (offline check).")
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False),
              help="A node's or the national hub's config: its CA and revocation list, and the current status there.")
@click.option("--revoked", "revoked", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The federation's revocation list file (offline check).")
def verify(file: str, ca: Path | None, config: str | None, revoked: Path | None) -> None:
    """Verify a certificate document: FILE, or '-' to read it from stdin, or the text decoded
    from the page's QR code given as FILE itself.

    Exit 0 with one line (holder, issuing province, validity); exit 1 with the reason.
    """
    from certs.revocation import RevocationList

    data = read_document(file)
    if config is not None:
        from runtime.config import ConfigError, load_any

        try:
            cfg = load_any(config)
        except ConfigError as err:
            raise click.ClickException(str(err)) from None
        ca = ca or cfg.tls.ca
        revoked = revoked or cfg.tls.revoked
    if ca is None:
        raise click.ClickException("--ca: give the federation CA certificate (or -c with a config that names it)")
    tokens = RevocationList(revoked).tokens() if revoked is not None else frozenset()
    try:
        ok = signed.verify(data, ca.read_bytes(), revoked=tokens)
    except CertificateRefused as err:
        _refuse(err)
        return
    line = ok.line()
    if config is None:
        click.echo(line)
        return
    status = _client(config).json("CheckCertificate", pb.CheckCertificateRequest(document=data))
    if "refused" in status:
        click.echo(f"refused ({status['refused']}): {status['detail']}", err=True)
        sys.exit(1)
    where = status["checked_at"]
    if status["status"] == "revoked":
        click.echo(f"refused (revoked): certificate {status['cert_no']} was revoked on {status.get('status_on')} "
                   f"({status.get('reason')}), as {where} knows", err=True)
        sys.exit(1)
    if status["status"] == "superseded":
        click.echo(f"refused (superseded): certificate {status['cert_no']} is superseded by "
                   f"{status.get('superseded_by')}, as {where} knows", err=True)
        sys.exit(1)
    click.echo(f"{line}; status at {where}: {status['status']}")


@certificate.command("render")
@click.argument("file")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PAGE.pdf or PAGE.png")
def render(file: str, out: Path) -> None:
    """A printable page in Chinese, with a QR code that holds the whole signed document."""
    from cli import certpage

    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise click.ClickException(f"--out: {out.name} must end in .pdf or .png")
    data = read_document(file)
    try:
        page = certpage.render(data, suffix[1:])
    except CertificateRefused as err:
        _refuse(err)
        return
    except certpage.NoFont as err:
        raise click.ClickException(str(err)) from None
    write_private(out, page)
    click.echo(str(out))
