"""The README's promises to a newcomer: the quick start says how to get a `yipanqi` command,
and its command list names every command the CLI has (checked against the click tree)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _commands(cmd: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(cmd, click.Group):
        return [p for name, sub in sorted(cmd.commands.items()) for p in _commands(sub, path + (name,))]
    return [path]


def test_the_readme_lists_every_command() -> None:
    section = README[README.index("## Every command"):]
    section = section[: section.index("\n## ", 4)]
    missing = []
    for path in _commands(main):
        *group, leaf = path
        # "yipanqi person import", or a "list|show" alternative, or "X ... / yipanqi Y" pairs
        pattern = r"yipanqi " + r" ".join(map(re.escape, group)) + (" " if group else "") + \
            r"(?:[\w-]+\\?\|)*" + re.escape(leaf) + r"(?:\\?\|[\w-]+)*\b"
        if not re.search(pattern, section):
            missing.append(" ".join(path))
    assert not missing, f"README.md's 'Every command' section does not list: {missing}"


def test_the_quick_start_says_how_to_get_the_command() -> None:
    quick = README[README.index("## Quick start"):README.index("## Layout")]
    assert "source .venv/bin/activate" in quick and ".venv/bin/yipanqi" in quick
    script = ROOT / ".venv" / "bin" / "yipanqi"
    activate = ROOT / ".venv" / "bin" / "activate"
    if (ROOT / ".venv").exists():  # the bootstrap made both, as the README says
        assert os.access(script, os.X_OK) and activate.exists()
