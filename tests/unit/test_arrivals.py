"""runtime.stats.Arrivals: the delivery-delay samples a process keeps in memory (not the store's)."""

from __future__ import annotations

from runtime.stats import Arrivals, delivery_delays


def test_arrivals_keep_the_latest_in_order_and_give_delays_per_origin() -> None:
    arrivals = Arrivals(keep=5)
    arrivals.add([("province-44", 1_000), ("province-45", 1_500)], 2_000)  # one batch applied at 2 s
    arrivals.add([("province-44", 3_000)], 3_250)
    assert arrivals.recent(2) == [("province-45", 1_500, 2_000), ("province-44", 3_000, 3_250)]
    assert delivery_delays(arrivals) == {
        "province-44": {"changes": 2, "p50_s": 0.625, "p95_s": 0.963},
        "province-45": {"changes": 1, "p50_s": 0.5, "p95_s": 0.5},
    }
    arrivals.add([("province-31", 9_000 + 100 * i) for i in range(4)], 10_000)  # over keep: the oldest go
    assert [o for o, _, _ in arrivals.recent(100)] == ["province-44"] + ["province-31"] * 4
    assert delivery_delays(arrivals, last=4) == {"province-31": {"changes": 4, "p50_s": 0.85, "p95_s": 0.985}}


def test_a_process_that_receives_nothing_has_no_delivery_figures() -> None:
    assert delivery_delays(None) == {}
    assert delivery_delays(Arrivals()) == {}
