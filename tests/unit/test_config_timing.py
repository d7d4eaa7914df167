"""The optional [timing] section (runtime.config.Timing): production's defaults when it is absent,
every key a positive number of seconds, unknown keys refused with the nearest name, and the
values reach what the process builds from them (gRPC keepalive options)."""

from __future__ import annotations

import itertools
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from cli.federation import init_federation
from runtime.config import PRODUCTION_TIMING, Timing, load_hub, load_node
from runtime.transport import channel_options, server_options
from tests.unit.test_config_strict import _message
from tests.unit.test_config_strict import _variant as strict_variant

_names = itertools.count()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return init_federation(tmp_path_factory.mktemp("timing"), ["11"], 7000)


def _variant(original: Path, timing: dict[str, Any]) -> Path:
    return strict_variant(original, lambda data: data.__setitem__("timing", timing))


def test_no_timing_section_is_productions(fed: dict[str, Path]) -> None:
    assert load_node(fed["province-11"]).timing == PRODUCTION_TIMING
    assert load_hub(fed["hub-national"]).timing == PRODUCTION_TIMING
    assert (PRODUCTION_TIMING.fallback_recheck_s, PRODUCTION_TIMING.keepalive_s,
            PRODUCTION_TIMING.keepalive_timeout_s, PRODUCTION_TIMING.online_s) == (20.0, 20.0, 10.0, 20.0)


def test_given_keys_override_the_rest_stay(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-11"], {"fallback_recheck_s": 2, "keepalive_s": 0.5})
    timing = load_node(path).timing
    assert timing.fallback_recheck_s == 2.0 and timing.keepalive_s == 0.5
    assert timing.max_backoff_s == PRODUCTION_TIMING.max_backoff_s
    hub = load_hub(_variant(fed["hub-bohai"], {"online_s": 7.5, "report_every_s": 1}))
    assert (hub.timing.online_s, hub.timing.report_every_s) == (7.5, 1.0)


def test_an_unknown_key_is_refused_with_the_nearest(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-11"], {"fallback_recheck": 2})
    assert _message(load_node, path) == (f"{path}: [timing].fallback_recheck: unknown key; "
                                         f"did you mean [timing].fallback_recheck_s?")


@pytest.mark.parametrize("value", [0, -1, "5", True, math.inf, math.nan, 100_000])
def test_a_value_that_is_not_a_positive_number_of_seconds_is_refused(fed: dict[str, Path], value: Any) -> None:
    path = _variant(fed["hub-national"], {"keepalive_timeout_s": value})
    text = _message(load_hub, path)
    assert text.startswith(f"{path}: [timing].keepalive_timeout_s: must be a positive number of seconds"), text


def test_timing_must_be_a_table(fed: dict[str, Path]) -> None:
    data = tomllib.loads(fed["province-11"].read_text(encoding="utf-8"))
    data["timing"] = 5
    path = fed["province-11"].with_name(f"timing-{next(_names)}.toml")
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    assert _message(load_node, path) == f"{path}: [timing]: must be a table"


def test_online_must_outlast_the_report_interval(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-national"], {"online_s": 5, "report_every_s": 5})
    assert "[timing].online_s: must be more than report_every_s (5)" in _message(load_hub, path)


def test_keepalive_reaches_the_grpc_options() -> None:
    fast = Timing(keepalive_s=4, keepalive_timeout_s=3)
    for options in (channel_options(fast), server_options(fast)):
        got = dict(options)
        assert (got["grpc.keepalive_time_ms"], got["grpc.keepalive_timeout_ms"],
                got["grpc.http2.ping_timeout_ms"]) == (4000, 3000, 3000)
    # The server accepts pings as often as its clients send them (else it would count strikes).
    assert dict(server_options(fast))["grpc.http2.min_recv_ping_interval_without_data_ms"] == 4000
    assert dict(channel_options())["grpc.keepalive_time_ms"] == 20_000


def test_clock_offset_may_be_negative_and_is_bounded(fed: dict[str, Path]) -> None:
    assert PRODUCTION_TIMING.clock_offset_s == 0.0
    assert load_node(_variant(fed["province-11"], {"clock_offset_s": -7200})).timing.clock_offset_s == -7200.0
    assert load_hub(_variant(fed["hub-bohai"], {"clock_offset_s": 10800.5})).timing.clock_offset_s == 10800.5
    for value in (86_400, -86_400, "1", True, math.nan):
        path = _variant(fed["province-11"], {"clock_offset_s": value})
        text = _message(load_node, path)
        assert text == (f"{path}: [timing].clock_offset_s: must be a number of seconds within a day "
                        f"either way, not {value!r}"), text


def test_the_clock_offset_shifts_every_wall_clock_reading_of_the_process() -> None:
    import time

    from runtime import clock, replica, reports

    try:
        clock.set_offset(-7200)
        real = time.time_ns() // 1_000_000
        for read in (clock.now_ms, replica.now_ms, reports.Desk(trust=None).now_ms):  # type: ignore[arg-type]
            assert abs(read() - (real - 7_200_000)) < 1_000
        clock.set_offset(0)
        assert abs(replica.now_ms() - time.time_ns() // 1_000_000) < 1_000
    finally:
        clock.set_offset(0)
