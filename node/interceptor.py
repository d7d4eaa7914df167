"""The one place where domain errors become gRPC status codes.

Servicers raise ``core.errors.SyncError`` subclasses (or let them propagate);
this interceptor turns each into its status (``err.status``) with the
error's message, for unary and streaming handlers alike. Anything else is a
bug: it is logged with its traceback and reported as INTERNAL without
internals leaking to the peer.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import grpc

from sqlalchemy.exc import OperationalError

from core.errors import SyncError

log = logging.getLogger("yipanqi.rpc")


def _code(err: SyncError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.status, grpc.StatusCode.INTERNAL)


def _fail(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, SyncError):
        log.info("%s refused: %s", method, exc)
        context.abort(_code(exc), str(exc))
    if isinstance(exc, OperationalError):  # locked, disk full, server gone: nothing was written
        log.error("%s: the store is unavailable: %s", method, exc.orig)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"the store is unavailable ({exc.orig}); nothing was written")
    log.exception("%s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the server log")


def _wrap_unary(fn: Callable[..., Any], method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status below
            if isinstance(exc, SyncError) or not _is_abort(exc):
                _fail(context, exc, method)
            raise

    return handler


def _wrap_stream(fn: Callable[..., Any], method: str) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from fn(request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, SyncError) or not _is_abort(exc):
                _fail(context, exc, method)
            raise

    return handler


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises a bare Exception subclass internal to grpc.
    return type(exc).__module__.startswith("grpc")


class ErrorInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method))
        return handler
