"""`yipanqi status` shows issue 17's receipts and gaps (cli.status), only when there are any; and what a
destination notes in its inbox for the deltas it decided (store.receipts.inbox_entries)."""

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


def test_inbox_entries_are_the_deltas_whose_chain_numbers_us() -> None:
    """store.receipts.inbox_entries, on real deltas a record's graph wrote."""
    from dataclasses import replace

    from core.graph import DUPLICATE, HELD, PARKED, REFUSED, RecordGraph
    from core.hlc import Timestamp
    from core.kinds import graph_rules
    from store.receipts import inbox_entries

    graph = RecordGraph("person", "k1", graph_rules("person"))
    _, delta, _ = graph.write({"id_number": "440101199001011234", "name": "x", "household_province": "44",
                               "residence_province": "11"}, origin="province-44", epoch=2, seq=1,
                              at=Timestamp(1, 0, "province-44"), op="create", now_ms=1)
    to_us = replace(delta, chain={"11": 7, "national": 3})
    elsewhere = replace(delta, chain={"65": 1})
    decided = [(to_us, HELD), (elsewhere, HELD), (to_us, DUPLICATE), (replace(to_us, chain={"11": 8}), PARKED),
               (replace(to_us, chain={"11": 9}), REFUSED)]
    assert inbox_entries("11", decided) == [("province-44", 2, 7, HELD), ("province-44", 2, 8, PARKED),
                                            ("province-44", 2, 9, REFUSED)]
    assert inbox_entries("national", decided[:1]) == [("province-44", 2, 3, HELD)]
