"""core.printable and cli.output: no output ever carries a raw control character, and data is never markup."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.output import console, json_text, plain, shown, text
from cli.status import render
from core.printable import UNSAFE_CATEGORIES, escape, escape_json, first_unsafe

HOSTILE = "\x1b[2J\x1b[31m张\x1b]0;pwned\x07伟\u009b31m[/][link=http://x]y[/link]:smile:\u202e\u200b"


def raw_unsafe(out: str, allowed: str = "") -> list[str]:
    return [f"U+{ord(c):04X}" for c in out if c not in allowed and unicodedata.category(c) in UNSAFE_CATEGORIES]


# Every code point class that matters: C0, DEL, C1, Cf, separators, surrogates, CJK, private use.
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_escaped_text_never_holds_a_raw_unsafe_character(value: str) -> None:
    out = escape(value)
    assert raw_unsafe(out) == []
    assert escape(out) == out  # escaping twice changes nothing more
    assert (first_unsafe(value) is None) == (out == value)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=tuple(UNSAFE_CATEGORIES)), max_size=60))
def test_safe_text_is_shown_as_it_is(value: str) -> None:
    assert escape(value) == value
    assert first_unsafe(value) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("\x1b[2J", "\\x1b[2J"),
    ("a\u009b31m", "a\\x9b31m"),          # C1 CSI
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC
    ("\x7f", "\\x7f"),
    ("abc\u202edef", "abc\\u202edef"),     # bidi override
    ("a\u200bb\ufeff", "a\\u200bb\\ufeff"),  # zero-width space, BOM
    ("x\u2028y", "x\\u2028y"),             # line separator
    ("\ud800", "\\ud800"),                 # lone surrogate
    ("\U000e0041", "\\U000e0041"),         # tag character (Cf, supplementary)
    ("张伟 \u3000 \ue000 [/]", "张伟 \u3000 \ue000 [/]"),  # ideographic space, private use, brackets stay
])  # fmt: skip
def test_escapes(value: str, expected: str) -> None:
    assert escape(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from([None, 2]))
def test_json_output_is_exact_and_safe(value: object, indent: int | None) -> None:
    out = json_text(value, indent=indent)
    assert json.loads(out) == value  # --json stays exact
    assert raw_unsafe(out, allowed="\n") == []
    assert escape_json(out) == out


def test_text_is_never_markup(capsys: pytest.CaptureFixture[str]) -> None:
    c = console()
    c.width = 400
    c.print(text(HOSTILE), text("[/]"), text("[bold]x[/bold]"), shown(HOSTILE))
    out = capsys.readouterr().out
    assert raw_unsafe(out, allowed="\n") == []
    assert "[/]" in out and "[link=http://x]y[/link]" in out and "[bold]x[/bold]" in out
    assert ":smile:" in out  # no emoji substitution
    assert "\\x1b[2J\\x1b[31m张\\x1b]0;pwned\\x07伟\\x9b31m" in out
    # Even a plain string printed by mistake is not read as markup on this console.
    c.print("[/] and [link=http://x]z[/link]")
    assert "[/] and [link=http://x]z[/link]" in capsys.readouterr().out


def test_plain() -> None:
    assert plain(HOSTILE).startswith("\\x1b[2J")
    assert plain(42) == "42"


def _hostile_status() -> dict:
    row = {"province": "44", "region": "pearl", "connected": True, "last_report_age_s": 1, "via": HOSTILE,
           "records": HOSTILE, "backlog": HOSTILE, "oldest_age_s": HOSTILE, "lag_s": [HOSTILE],
           "conflicts": "[/]", "rejects": HOSTILE, "delivery_p50_s": {"x": HOSTILE}, "delivery_p95_s": 1,
           "receive_p50_s": None, "receive_p95_s": None}
    return {"role": "hub", "identity": "hub-national", "log_lsn": 1, "quarantined": 0, "records": 2,
            "conflicts": HOSTILE,
            "destinations": [{"peer": "hub-pearl", "connected": True, "acked": 1, "queue": 0,
                              "oldest_age_s": None, "last_contact_ms": HOSTILE}],
            "upstream": None, "federation": [row]}


def test_a_hostile_national_status_renders_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    c = console()
    c.width = 2000
    c.print(render(_hostile_status()))
    out = capsys.readouterr().out
    assert raw_unsafe(out, allowed="\n") == []
    assert "\\x1b[2J\\x1b[31m张" in out and "[/]" in out


def test_a_hostile_node_status_renders_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"role": "node", "identity": "province-44", "records": 1, "last_seq": 2, "acked_seq": 2,
           "outbox": {"changes": 0, "oldest_age_s": None}, "conflicts": 0, "quarantined": 0,
           "origins": {HOSTILE: {"last_seq": 1, "last_write_ms": HOSTILE, "received_ms": 1, "lag_s": HOSTILE}},
           "hub": {"connected": False, "hub": None, "home": "pearl", "fallback": False, "up_since_ms": None,
                   "down_since_ms": 1, "last_error": HOSTILE}}
    c = console()
    c.width = 2000
    c.print(render(doc))
    out = capsys.readouterr().out
    assert raw_unsafe(out, allowed="\n") == []
    assert out.count("\\x1b[2J") >= 3
