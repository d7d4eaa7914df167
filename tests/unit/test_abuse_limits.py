"""The limits behind issue 11's resource half, in-process: fair-share slots, log rate limits,
junk pacing, the report schema and per-field checks of received values.
(tests/integration/test_abuse.py runs the same against real processes.)"""

from __future__ import annotations

import json
import logging
from datetime import date

import pytest

from core.errors import ValidationError
from core.person import check_value
from runtime import reports
from runtime.fairshare import OPERATORS, PER_IDENTITY, PER_METHOD, ResourceExhausted, Slots
from runtime.junk import Pacer, RateLog


class FakeContext:
    def __init__(self, cn: str) -> None:
        self.cn = cn
        self.cancelled = False

    def auth_context(self) -> dict:
        return {"x509_common_name": [self.cn.encode()]}

    def cancel(self) -> None:
        self.cancelled = True


def test_slots_are_counted_per_identity_and_method_and_operators_have_their_own() -> None:
    slots = Slots("pearl")
    tokens = [slots.acquire(FakeContext("province-44"), "/m/Watch") for _ in range(PER_METHOD)]
    with pytest.raises(ResourceExhausted, match="province-44 already holds 4 Watch"):
        slots.acquire(FakeContext("province-44"), "/m/Watch")
    tokens += [slots.acquire(FakeContext("province-44"), "/m/Push") for _ in range(PER_IDENTITY - PER_METHOD)]
    with pytest.raises(ResourceExhausted, match="its share"):
        slots.acquire(FakeContext("province-44"), "/m/Pull")
    # Nobody else is touched: another province, and this hub's operators (a pool of their own).
    slots.acquire(FakeContext("province-45"), "/m/Watch")
    ops = [slots.acquire(FakeContext(f"operator-pearl-a{i}"), "/m/Status") for i in range(OPERATORS)]
    with pytest.raises(ResourceExhausted):
        slots.acquire(FakeContext("operator-pearl-zz"), "/m/Status")
    with pytest.raises(ResourceExhausted):  # another scope's operators share the small pool of strangers
        for i in range(10):
            slots.acquire(FakeContext(f"operator-44-x{i}"), "/m/Status")
    for t in tokens + ops:
        slots.release(t)
    assert slots.held() == {"province-45": 1, "(others)": 4}
    slots.acquire(FakeContext("province-44"), "/m/Watch")


def test_rate_log_keeps_a_few_lines_per_party_and_reports_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.ratelog")
    rl = RateLog(log, lines=3, window_s=10)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for i in range(100):
            rl.warning("province-44", 0.0 + i * 0.01, "line %d", i)
        rl.warning("province-45", 0.5, "other %d", 1)
        rl.warning("province-44", 20.0, "later %d", 1)
    text = [r.getMessage() for r in caplog.records]
    assert text[:3] == ["line 0", "line 1", "line 2"]
    assert "further ones are counted" in text[3]
    assert "other 1" in text
    assert "suppressed 97 more quarantine lines for province-44 in the last 20 s" in text
    assert text[-1] == "later 1"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for i in range(5):
            rl.warning("province-46", 30.0, "x %d", i)
        rl.flush(35.0)
        assert len(caplog.records) == 4  # 3 lines and "further ones are counted": the window has not ended
        rl.flush(41.0)  # it has, and province-46 went quiet: its count is still reported
    assert caplog.records[-1].getMessage() == "suppressed 2 more quarantine lines for province-46 in the last 11 s"


def test_pacer_holds_back_a_peer_over_its_budget_only() -> None:
    p = Pacer(rate=100, burst=1000)
    assert p.charge("province-44", 500, 0.0) == 0
    assert p.charge("province-44", 1000, 0.0) == 2.0  # 500 tokens short: 5 s, capped at 2
    assert p.charge("province-45", 0, 0.0) == 0
    assert p.charge("province-44", 0, 10.0) == 0  # refilled


def test_reports_must_fit_the_schema() -> None:
    good = {"at_ms": 1, "records": 3, "quarantined": 0, "oldest_age_s": None, "max_lag_s": 0.5,
            "delivery": {"province-11": {"changes": 2, "p50_s": 0.1, "p95_s": 0.2}}, "x_newer": [1]}
    own = reports.node_figures(good)
    assert own["records"] == 3 and "x_newer" not in own
    for bad, key in (({"quarantined": "x"}, "quarantined"), ({"records": -1}, "records"),
                     ({"records": True}, "records"), ({"max_lag_s": float("inf")}, "max_lag_s"),
                     ({"delivery": {"hub-x": {}}}, "delivery"), ({"delivery": []}, "delivery")):
        with pytest.raises(reports.BadReport, match=key):
            reports.node_figures(bad)
    with pytest.raises(reports.BadReport, match="not valid JSON"):
        reports.parse("[" * 100_000, from_hub=False)
    with pytest.raises(reports.BadReport, match="signed: missing"):
        reports.parse(json.dumps(good), from_hub=False)  # a node's figures must come signed (test_signed_reports)
    with pytest.raises(reports.BadReport, match="nodes: must be a list"):
        reports.parse(json.dumps({"log_lsn": 1, "nodes": {"province-11": good}}), from_hub=True)
    with pytest.raises(reports.BadReport, match="log_lsn"):
        reports.parse(json.dumps({"log_lsn": "x", "nodes": []}), from_hub=True)
    own, nodes = reports.parse(json.dumps({"log_lsn": 1, "nodes": [{"body": "{}"}]}), from_hub=True)
    assert own == {"log_lsn": 1} and nodes == [{"body": "{}"}]


def test_received_values_are_checked_field_by_field() -> None:
    today = date(2030, 1, 1)
    check_value("children", 2, today=today)
    check_value("contraception", None, today=today)
    for field, value, why in (("children", {"nested": [[[[1]]]]}, "must be an integer"),
                              ("children", "2", "normal form"), ("name", " 张三 ", "normal form"),
                              ("name", None, "cannot be empty"), ("nickname", "x", "unknown field"),
                              ("birth_date", "2031-01-01", "future")):
        with pytest.raises(ValidationError, match=why) as err:
            check_value(field, value, today=today)
        assert err.value.field == field
