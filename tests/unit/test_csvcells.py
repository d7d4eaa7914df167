"""cli.csvcells: formula cells neutralised with an exact round trip; lines and fields bounded."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import csvcells
from cli.csvcells import MAX_FIELD, MAX_LINE, TRIGGERS, neutralise, restore

cells = st.text(alphabet=st.sampled_from(list("=+-@\t\r'ab 1\n\"张,")), max_size=8) | st.text(max_size=8)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells)
def test_round_trip_is_exact_and_no_cell_starts_a_formula(value: str) -> None:
    out = neutralise(value)
    assert isinstance(out, str)
    assert restore(out) == value
    assert not out or out[0] not in TRIGGERS


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=5))
def test_round_trip_through_a_csv_file(rows: list[list[str]]) -> None:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([[neutralise(c) for c in row] for row in rows])
    back = [[restore(c) for c in row] for row in csv.reader(io.StringIO(buf.getvalue(), newline=""))]
    assert back == rows


def test_examples() -> None:
    assert neutralise('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert neutralise("-1+1") == "'-1+1"
    assert neutralise("+86 10") == "'+86 10"
    assert neutralise("\tx") == "'\tx"
    assert neutralise("'Brien") == "'Brien" and restore("'Brien") == "'Brien"  # a hand-written quote stays
    assert neutralise("'=x") == "''=x" and restore("''=x") == "'=x"
    assert neutralise("张伟") == "张伟" and neutralise(3) == 3 and neutralise(None) is None


def _read_all(text: str) -> tuple[list[dict], list[tuple[int, str]]]:
    handle = io.StringIO(text, newline="")
    reader, lines = csvcells.reader(handle)
    rows, errors = [], []
    assert reader.fieldnames == ["a", "b"]
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csvcells.Oversized as err:
            errors.append((err.line, str(err)))
            continue
        except csv.Error as err:
            errors.append((lines.line, str(err)))
            continue
        rows.append((lines.line, row))
    return rows, errors


def test_an_oversized_line_is_refused_by_its_number_and_the_next_rows_still_load() -> None:
    text = "a,b\n1,2\n3," + "x" * (MAX_LINE + 10) + "\n5,6\n7,8\n"
    rows, errors = _read_all(text)
    assert errors == [(3, f"line longer than {MAX_LINE} characters; skipped")]
    assert rows == [(2, {"a": "1", "b": "2"}), (4, {"a": "5", "b": "6"}), (5, {"a": "7", "b": "8"})]


def test_an_oversized_field_is_a_csv_error_for_its_line() -> None:
    text = "a,b\n1,2\n3,\"" + "y" * (MAX_FIELD + 1) + "\"\n5,6\n"
    rows, errors = _read_all(text)
    assert [line for line, _ in errors] == [3] and "field larger than field limit" in errors[0][1]
    assert rows == [(2, {"a": "1", "b": "2"}), (4, {"a": "5", "b": "6"})]


def test_memory_stays_bounded_whatever_the_line_length(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with open(path, "w", newline="") as f:
        f.write("a,b\n1,2\n3,")
        for _ in range(40):
            f.write("z" * 1_000_000)  # one 40 MB line
        f.write("\n5,6\n")
    tracemalloc.start()
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader, lines = csvcells.reader(handle)
            got = []
            while True:
                try:
                    got.append(next(reader))
                except StopIteration:
                    break
                except csvcells.Oversized:
                    continue
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == [{"a": "1", "b": "2"}, {"a": "5", "b": "6"}]
    assert peak < 4 * MAX_LINE * 4 + 1_000_000, peak  # a few lines' worth, not 40 MB
