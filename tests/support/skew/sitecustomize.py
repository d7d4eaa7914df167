"""Skew this process's wall clock for tests: ``YIPANQI_TEST_CLOCK_SKEW_S=+10800``.

Put this directory first on ``PYTHONPATH`` of a node or hub process and set
``YIPANQI_TEST_CLOCK_SKEW_S`` (seconds, may be negative or fractional): from
interpreter start-up on, ``time.time()`` and ``time.time_ns()`` run that far
ahead (or behind). The project reads the wall clock only through those two
(``runtime.replica.now_ms``), so its HLC timestamps, ``at_ms``, ``received_ms`` and
log lines all carry the skew, as on a machine whose clock is off. Monotonic
clocks (timeouts, backoff), ``datetime.now()`` (certificate validity) and
TLS inside gRPC's C core keep the true time.

gRPC's Python layer is the exception that must see the true clock: it turns
timeouts into absolute deadlines with ``time.time()`` and hands them to its C
core, which compares them with the real clock (2 hours behind, every call and
connection attempt would time out at once; ahead, the server's poll loop would
never wake). On a machine whose clock is really off both agree; here gRPC's
modules are imported up front and given the unskewed ``time``.

Without the variable this module only chains to whatever ``sitecustomize``
would have been imported had this directory not been on the path, so putting
it on ``PYTHONPATH`` is otherwise invisible.
"""

from __future__ import annotations


def _chain() -> None:
    """Run the next ``sitecustomize`` on sys.path (the one ours shadows), if there is one."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.realpath(__file__))
    rest = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or not spec.origin:
        return
    if os.path.realpath(spec.origin) == os.path.realpath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_yipanqi_chained_sitecustomize"] = module
    spec.loader.exec_module(module)


def _skew() -> None:
    import os
    import sys
    import time
    import types

    raw = os.environ.get("YIPANQI_TEST_CLOCK_SKEW_S", "").strip()
    if not raw:
        return
    try:
        offset_s = float(raw)
    except ValueError:
        # An exception here would only be printed as a warning and the process would run
        # unskewed, silently invalidating the test: stop the interpreter instead.
        sys.stderr.write(f"sitecustomize: YIPANQI_TEST_CLOCK_SKEW_S={raw!r} is not a number of seconds\n")
        raise SystemExit(2) from None
    if getattr(time, "_yipanqi_skew_s", None) is not None:  # imported twice: do not add the offset twice
        return
    offset_ns = round(offset_s * 1_000_000_000)
    real_time, real_time_ns = time.time, time.time_ns

    def skewed_time() -> float:
        return real_time() + offset_s

    def skewed_time_ns() -> int:
        return real_time_ns() + offset_ns

    skewed_time.__doc__ = f"time.time() skewed by {offset_s:+g} s (tests/support/skew)"
    skewed_time_ns.__doc__ = f"time.time_ns() skewed by {offset_s:+g} s (tests/support/skew)"
    true_clock = types.ModuleType("time", time.__doc__)  # the time module as it was, for gRPC
    true_clock.__dict__.update(time.__dict__)
    _grpc_keeps(true_clock, time)
    time.time, time.time_ns = skewed_time, skewed_time_ns
    time._yipanqi_skew_s = offset_s  # type: ignore[attr-defined]
    time._yipanqi_real_time_ns = real_time_ns  # type: ignore[attr-defined]


def _grpc_keeps(true_clock, time_module) -> None:  # type: ignore[no-untyped-def]
    """Give every gRPC module that imported ``time`` the true clock (see the module docstring)."""
    import importlib
    import sys

    for name in ("grpc", "grpc._cython.cygrpc", "grpc._common", "grpc._utilities", "grpc._channel",
                 "grpc._server", "grpc._interceptor", "grpc.aio"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for name, module in list(sys.modules.items()):
        if (name == "grpc" or name.startswith(("grpc.", "grpc_"))) and getattr(module, "time", None) is time_module:
            module.time = true_clock


try:
    _chain()
finally:
    _skew()
