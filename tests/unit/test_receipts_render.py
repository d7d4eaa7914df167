"""`yipanqi status` shows issue 17's receipts and gaps (cli.status), only when there are any."""

from __future__ import annotations

import pytest

from cli.output import console
from cli.status import render

NODE = {"role": "node", "identity": "province-11", "records": 1, "last_seq": 3, "acked_seq": 3,
        "outbox": {"changes": 0, "oldest_age_s": None}, "conflicts": 0, "quarantined": 0, "origins": {}, "hub": None}


def _shown(doc: dict, capsys: pytest.CaptureFixture[str]) -> str:
    c = console()
    c.width = 400
    c.print(render(doc))
    return capsys.readouterr().out


def test_nothing_owed_and_no_gaps_shows_nothing_new(capsys: pytest.CaptureFixture[str]) -> None:
    out = _shown(NODE, capsys)
    assert "receipted" not in out and "gaps" not in out


def test_owed_changes_and_gaps_are_shown_with_the_alert_and_the_hub(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {**NODE,
           "receipts": {"44": {"oldest_seq": 7, "oldest_counter": 2, "oldest_delta": "a" * 64, "oldest_age_s": 400.0,
                               "via": "hub-pearl", "owed": 3, "alert": True},
                        "65": {"oldest_seq": 9, "oldest_counter": 1, "oldest_delta": "b" * 64, "oldest_age_s": 2.0,
                               "via": None, "owed": 1, "alert": False}},
           "gaps": {"province-44": [{"epoch": 0, "missing": [[2, 3], [5, 5]]}]}}
    lines = _shown(doc, capsys).splitlines()
    assert any("[timing].receipt_alert_s" in line for line in lines)  # literal text, not markup
    row44 = next(line for line in lines if "│ 44 " in line)
    assert all(w in row44 for w in ("7", "6.7m", "hub-pearl", "3", "ALERT"))
    row65 = next(line for line in lines if "│ 65 " in line)
    assert "2.0s" in row65 and "ALERT" not in row65
    assert "gaps (changes meant for us that never arrived): province-44 epoch 0: 2-3, 5" in lines


def test_the_national_hub_shows_its_gaps(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"role": "hub", "identity": "hub-national", "log_lsn": 1, "quarantined": 0, "destinations": [],
           "upstream": None, "gaps": {"province-11": [{"epoch": 1, "missing": [[4, 4]]}]}}
    assert "province-11 epoch 1: 4" in _shown(doc, capsys)
