"""The operator's gRPC client to a running node or hub (the process owns its database)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import click
import grpc

from runtime.config import ConfigError, HubConfig, NodeConfig, load_any
from cli.output import Failure
from runtime.transport import secure_channel
from yipanqi.v2 import admin_pb2 as pb
from yipanqi.v2 import admin_pb2_grpc as pb_grpc


@dataclass
class AdminClient:
    config: NodeConfig | HubConfig
    stub: pb_grpc.AdminStub
    channel: grpc.Channel

    @classmethod
    def open(cls, path: str) -> "AdminClient":
        try:
            cfg = load_any(path)
        except ConfigError as err:
            raise Failure(str(err)) from None
        if cfg.operator is None:
            raise Failure(f"{cfg.path}: [operator]: missing section (operator credentials for the CLI)")
        op = cfg.operator
        channel = secure_channel(cfg.listen, cfg.identity, op.ca, op.cert, op.key)
        return cls(cfg, pb_grpc.AdminStub(channel), channel)

    def call(self, method: str, request: Any, *, timeout: float = 30) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as err:
            raise _explain(err, self.config) from None

    def stream(self, method: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self.stub, method)(request, timeout=3600)
        except grpc.RpcError as err:
            raise _explain(err, self.config) from None

    def records(self, request: Any) -> Iterator[dict[str, Any]]:
        """Every record a List call returns (pages flattened)."""
        for page in self.pages(request):
            yield from page

    def pages(self, request: Any) -> Iterator[list[dict[str, Any]]]:
        """The records of a List call, page by page as the server sends them."""
        for page in self.stream("List", request):
            yield [json.loads(reply.json) for reply in page.records]

    def resolve(self, record_id: str, kind: str = "person") -> str:
        """A full record id from ``record_id`` or a unique prefix of one (at least 4 characters).
        Raises ClickException naming the argument when no record, or more than one, matches."""
        from core.personkey import is_person_key, is_random_key

        text = record_id.strip().lower()
        name = f"{kind.upper()}_ID"
        if len(text) == 36 or is_person_key(text) or is_random_key(text):  # a whole id: the server checks it
            return record_id.strip()
        # Ids are legacy uuids (hex and -) or person keys: p-<base32> and r-<uuid4>.
        if not text or any(c not in "0123456789abcdefghijklmnopqrstuvwxyz-" for c in text):
            raise click.ClickException(f"{name} {record_id!r}: not a {kind} id or a prefix of one "
                                       "(p-/r- keys, hex digits and -)")
        if len(text) < 4:
            raise click.ClickException(f"{name} {record_id!r}: give at least 4 characters of the id")
        found = [r[f"{kind}_id"] for r in self.records(pb.ListRequest(kind=kind, include_deleted=True,
                                                                     after=text, limit=2))]
        found = [f for f in found if f.startswith(text)]
        if not found:
            raise click.ClickException(f"{name} {record_id!r}: no {kind} record on {self.config.identity} "
                                       "has an id starting with it")
        if len(found) > 1:
            raise click.ClickException(f"{name} {record_id!r}: more than one {kind} record starts with it "
                                       f"({found[0]}, {found[1]}, ...); give more of the id")
        return found[0]

    def json(self, method: str, request: Any) -> Any:
        return json.loads(self.call(method, request).json)

    def status(self) -> dict[str, Any]:
        return self.json("Status", pb.Empty())


def _tls_refusal(cfg: NodeConfig | HubConfig) -> str | None:
    """Why TLS with the process failed, if a handshake of our own shows it was TLS (a certificate
    that does not name the host we dial, or another member's); None if it is just not reachable."""
    import ssl

    from runtime.transport import describe_failure, server_certificate

    assert cfg.operator is not None
    try:
        server_certificate(cfg.listen, cfg.identity, cfg.operator.ca, cfg.operator.cert, cfg.operator.key)
    except ssl.SSLError as tls_err:
        return describe_failure(cfg.listen, tls_err)
    except OSError:
        return None
    return None


def _explain(err: grpc.RpcError, cfg: NodeConfig | HubConfig) -> click.ClickException:
    """The server's error for the operator; its details may quote data back, so they are escaped (Failure)."""
    code = err.code()
    if code == grpc.StatusCode.UNAVAILABLE and (err.details() or "").startswith("the store is unavailable"):
        return click.ClickException(f"{cfg.identity} is running, but {err.details()}; try again later")
    if code == grpc.StatusCode.UNAVAILABLE:
        why = _tls_refusal(cfg)
        if why is not None:
            return Failure(f"{cfg.identity}: refused, {why}")
        return Failure(f"{cfg.identity} at {cfg.listen} is not reachable ({err.details()}); is it running?")
    return Failure(f"{code.name.lower().replace('_', ' ')}: {err.details()}")
