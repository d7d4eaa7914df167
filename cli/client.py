"""The operator's gRPC client to a running node or hub (the process owns its database)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import click
import grpc

from cli.config import ConfigError, HubConfig, NodeConfig, load_any
from cli.output import Failure
from node.transport import secure_channel
from yipanqi.v1 import admin_pb2 as pb
from yipanqi.v1 import admin_pb2_grpc as pb_grpc


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
        for page in self.stream("List", request):
            for reply in page.records:
                yield json.loads(reply.json)

    def json(self, method: str, request: Any) -> Any:
        return json.loads(self.call(method, request).json)

    def status(self) -> dict[str, Any]:
        return self.json("Status", pb.Empty())


def _tls_refusal(cfg: NodeConfig | HubConfig) -> str | None:
    """Why TLS with the process failed, if a handshake of our own shows it was TLS (a certificate
    that does not name the host we dial, or another member's); None if it is just not reachable."""
    import ssl

    from node.transport import describe_failure, server_certificate

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
    if code == grpc.StatusCode.UNAVAILABLE:
        why = _tls_refusal(cfg)
        if why is not None:
            return Failure(f"{cfg.identity}: refused, {why}")
        return Failure(f"{cfg.identity} at {cfg.listen} is not reachable ({err.details()}); is it running?")
    return Failure(f"{code.name.lower().replace('_', ' ')}: {err.details()}")
