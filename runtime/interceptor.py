"""The one place where domain errors become gRPC status codes.

Servicers raise ``core.errors.SyncError`` subclasses (or let them propagate);
this interceptor turns each into its status (``err.status``) with the
error's message, for unary and streaming handlers alike. An outage of our own
store (``StoreUnavailable``) is UNAVAILABLE "the store is unavailable (...);
nothing was written", logged once per outage by runtime.outage, not per call. Anything else is a
bug: it is logged with its traceback and reported as INTERNAL without
internals leaking to the peer.

A refusal is logged by ``err.log_text``: the field and the rule, never the
value (which the caller still gets back in the status details), so the log
never carries a name, an ID number or a birth date.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import grpc

from core.errors import Malformed, StoreUnavailable, SyncError
from runtime.junk import RateLog

log = logging.getLogger("yipanqi.rpc")
# A peer over its fair share (runtime.fairshare) may retry in a tight loop: a few lines a minute per
# method say so, with the count of the rest, instead of a line per refused call.
_over_share = RateLog(log, what="refusals over a fair share")


def _code(err: SyncError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, err.status, grpc.StatusCode.INTERNAL)


# Status details travel in trailing metadata, which gRPC clients cap (8 KiB by default): a
# longer message (one quoting a peer's oversized input back, say) would reach the client as
# RESOURCE_EXHAUSTED instead of the real status.
MAX_DETAILS = 1000


def _details(exc: BaseException) -> str:
    return _details_text(str(exc))


def _details_text(text: str) -> str:
    if len(text) > MAX_DETAILS:
        text = f"{text[:MAX_DETAILS]}... ({len(text) - MAX_DETAILS} more characters)"
    return text


def _fail(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, StoreUnavailable):  # locked, disk full, server gone: nothing was written
        log.debug("%s: the store is unavailable: %s", method, exc.reason)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"the store is unavailable ({exc.reason}); nothing was written")
    if isinstance(exc, SyncError):
        details = _details(exc)
        if exc.status == "RESOURCE_EXHAUSTED":
            _over_share.warning(method, time.monotonic(), "%s refused: %s", method, details)
        else:
            log.info("%s refused: %s", method, _details_text(exc.log_text))
        context.abort(_code(exc), details)
    log.exception("%s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the server log")


class _Undecodable:
    """Stands in for a request message that did not decode (see ``_lenient``)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    # grpc answers a request it cannot deserialize with INTERNAL ("Exception deserializing
    # request!"), as if the server were broken. Hand the handler a marker instead, so the
    # peer's bytes are refused as INVALID_ARGUMENT like any other malformed input.
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            return _Undecodable(str(exc) or type(exc).__name__)

    return decode


def _decoded(request: Any, method: str) -> Any:
    if isinstance(request, _Undecodable):
        raise Malformed(f"{method}: the request message does not decode ({request.error})")
    return request


def _checked_stream(requests: Any, method: str) -> Any:
    for request in requests:
        yield _decoded(request, method)


def _wrap_unary(fn: Callable[..., Any], method: str, streaming: bool = False) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            request = _checked_stream(request, method) if streaming else _decoded(request, method)
            return fn(request, context)
        except grpc.RpcError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status below
            if isinstance(exc, SyncError) or not _is_abort(exc):
                _fail(context, exc, method)
            raise

    return handler


def _wrap_stream(fn: Callable[..., Any], method: str, streaming: bool = False) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            request = _checked_stream(request, method) if streaming else _decoded(request, method)
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
    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        handler = handler._replace(request_deserializer=_lenient(handler.request_deserializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method, streaming=True))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method, streaming=True))
        return handler
