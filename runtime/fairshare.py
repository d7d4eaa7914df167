"""Fair share of a process's RPC slots: per identity and method, with a reserve for operators.

How this works. gRPC's sync server runs every call on a worker thread and a stream holds
its thread for as long as it is open. gRPC's own cap (``maximum_concurrent_rpcs``) is one
number for everyone, so one certificate that opens enough streams gets every later caller,
operators included, refused with RESOURCE_EXHAUSTED. Instead, every call takes a slot here
first, counted against the identity in its TLS certificate (the CN):

* a province or hub identity holds at most ``PER_METHOD`` calls of one method and
  ``PER_IDENTITY`` in all;
* operators of this process's own scope share a pool of ``OPERATORS`` slots that no peer can
  touch (and each holds at most ``PER_METHOD`` of one method), so ``status`` always answers;
* every other certificate (another scope's operators, names we do not know) shares one small
  pool of ``OTHERS``.

The worker pool is sized to the sum of all of these (``workers_needed``), so the slots a
party holds can never take a thread another party is owed: one identity can fill only its
own share. Health and reflection are counted like every other method.

The numbers. A node needs one Push and one Pull per hub; a stream that is being replaced
(a reconnect while the old one lingers half-open until keepalive drops it, ~30 s) briefly
makes two, and an operator's ``node rebuild`` or a probe a third. ``PER_METHOD = 4`` leaves
one spare; ``PER_IDENTITY = 8`` covers Push, Pull and a few probes at once.

Revocation. Calls register their client certificate; ``sweep`` (every second, on its own
thread) cancels every open call whose certificate has since been revoked, idle or not, so a
revoked peer loses its streams within a second or two instead of when it next speaks.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from certs.revocation import RevocationList
from core.errors import SyncError
from core.identity import HUBS, PROVINCE_CODES, Identity, IdentityError

log = logging.getLogger("yipanqi.fairshare")

PER_METHOD = 4
PER_IDENTITY = 8
OPERATORS = 16
OTHERS = 4


class ResourceExhausted(SyncError):
    status = "RESOURCE_EXHAUSTED"


def workers_needed() -> int:
    """Threads for every party's full share at once, plus a few for the server itself."""
    parties = len(PROVINCE_CODES) + len(HUBS)
    return parties * PER_IDENTITY + OPERATORS + OTHERS + 4


@dataclass
class _Call:
    identity: str
    party: str
    method: str
    context: grpc.ServicerContext
    pem: bytes | None


class Slots:
    """Who holds which slots; thread-safe. ``scope`` is "44" on node 44, "pearl" on hub-pearl."""

    def __init__(self, scope: str, revocations: RevocationList | None = None) -> None:
        self.scope = scope
        self.revocations = revocations or RevocationList(None)
        self._lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._by_method: dict[tuple[str, str], int] = {}
        self._by_party: dict[str, int] = {}
        self._next = 0
        self._serials: dict[bytes, str | None] = {}

    def _party(self, identity: str) -> tuple[str, int]:
        """The pool a caller draws from and its size."""
        try:
            ident = Identity.parse(identity)
        except IdentityError:
            return "(others)", OTHERS
        if ident.role == "operator":
            return ("(operators)", OPERATORS) if ident.scope == self.scope else ("(others)", OTHERS)
        return identity, PER_IDENTITY

    def acquire(self, context: grpc.ServicerContext, method: str) -> int:
        """Take a slot for this call; ResourceExhausted (naming the limit) if its share is used up."""
        auth = context.auth_context()
        names = auth.get("x509_common_name") or []
        identity = names[0].decode(errors="replace") if len(names) == 1 else "(no identity)"
        pems = auth.get("x509_pem_cert") or []
        party, size = self._party(identity)
        short = method.rsplit("/", 1)[-1]
        with self._lock:
            if self._by_method.get((identity, method), 0) >= PER_METHOD:
                raise ResourceExhausted(f"{identity} already holds {PER_METHOD} {short} calls here "
                                        f"(the limit per identity and method)")
            if self._by_party.get(party, 0) >= size:
                raise ResourceExhausted(f"{party if party.startswith('(') else identity} already holds "
                                        f"{size} calls here (its share)")
            self._next += 1
            token = self._next
            self._calls[token] = _Call(identity, party, method, context, pems[0] if pems else None)
            self._by_method[(identity, method)] = self._by_method.get((identity, method), 0) + 1
            self._by_party[party] = self._by_party.get(party, 0) + 1
        return token

    def release(self, token: int) -> None:
        with self._lock:
            call = self._calls.pop(token, None)
            if call is None:
                return
            key = (call.identity, call.method)
            self._by_method[key] -= 1
            if not self._by_method[key]:
                del self._by_method[key]
            self._by_party[call.party] -= 1
            if not self._by_party[call.party]:
                del self._by_party[call.party]

    def held(self) -> dict[str, int]:
        """Calls open per party (for status and tests)."""
        with self._lock:
            return dict(self._by_party)

    # -- revocation ------------------------------------------------------------------
    def _serial(self, pem: bytes) -> str | None:
        if pem not in self._serials:
            if len(self._serials) > 4096:
                self._serials.clear()
            try:
                from cryptography import x509

                from certs.keyring import _norm_revocation

                self._serials[pem] = _norm_revocation(format(x509.load_pem_x509_certificate(pem).serial_number, "x"))
            except ValueError:
                self._serials[pem] = None
        return self._serials[pem]

    def sweep(self) -> int:
        """Cancel every open call whose client certificate is revoked; how many were cancelled."""
        tokens = self.revocations.tokens()
        if not tokens:
            return 0
        with self._lock:
            calls = list(self._calls.values())
        cancelled = 0
        for call in calls:
            if call.pem is not None and self._serial(call.pem) in tokens:
                call.context.cancel()
                cancelled += 1
                log.warning("closed a %s call of %s: its certificate is revoked", call.method.rsplit("/", 1)[-1],
                            call.identity)
        return cancelled

    def start_sweeper(self, stop: threading.Event, every_s: float) -> threading.Thread:
        """Sweep every ``every_s`` seconds ([timing].sweep_s) until ``stop``."""
        def run() -> None:
            while not stop.wait(every_s):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - a sweep that fails must not stop the next
                    log.exception("revocation sweep failed")

        thread = threading.Thread(target=run, name="revocation-sweep", daemon=True)
        thread.start()
        return thread


def _guard(fn: Callable[..., Any], slots: Slots, method: str, streaming_response: bool) -> Callable[..., Any]:
    if streaming_response:
        def stream_handler(request: Any, context: grpc.ServicerContext) -> Any:
            token = slots.acquire(context, method)
            try:
                yield from fn(request, context)
            finally:
                slots.release(token)

        return stream_handler

    def unary_handler(request: Any, context: grpc.ServicerContext) -> Any:
        token = slots.acquire(context, method)
        try:
            return fn(request, context)
        finally:
            slots.release(token)

    return unary_handler


class FairShareInterceptor(grpc.ServerInterceptor):
    """Every call takes a slot from ``slots`` before its handler runs (place it after the
    ErrorInterceptor, which turns ResourceExhausted into its status)."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind, streaming in (("unary_unary", False), ("stream_unary", False),
                                ("unary_stream", True), ("stream_stream", True)):
            fn = getattr(handler, kind)
            if fn:
                return handler._replace(**{kind: _guard(fn, self.slots, method, streaming)})
        return handler
