"""The packages import only downward: the layering rules, read from every module's imports.

How this works. Each ``.py`` file under the project's packages is parsed with ``ast`` (never
imported) and every ``import`` / ``from ... import`` in it, at any depth (functions included),
is resolved to the top-level package it names. The rules (an arrow means "may be imported by"):

    core <- certs, store <- runtime <- node, hub <- cli

* a package imports only itself and the packages below it (core, certs and store also no
  generated protobuf code; certs and store not each other; node and hub not each other);
* nothing outside cli/ imports cli/ (bench/ neither; tests/ may import anything);
* core/ stays pure: no network, database, clock, randomness, process or thread modules, and no
  ``.now()`` / ``.today()`` / ``.utcnow()`` calls: such values are passed in. Imports under
  ``if TYPE_CHECKING:`` never run, so for this rule they do not count.
* the database is the store's: nothing above store/ (runtime, node, hub, cli) imports a database
  library (SQLAlchemy, Alembic, a driver), not even for types. The store raises
  ``core.errors.StoreUnavailable`` for an outage and offers what callers need of a URL
  (``store.db.describe``, ``store.db.sqlite_file``). Exceptions are listed in ``DATABASE_ALLOWED``
  with the reason.

``violations(root)`` returns one line per broken rule; the synthetic trees below show that each
rule fails when broken, so the check on the real tree cannot pass by reading nothing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each package may import besides itself. "yipanqi" is the generated protobuf code
# (proto/yipanqi); standard library and third-party modules are not layers.
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "certs": {"core"},
    "store": {"core"},
    "runtime": {"core", "certs", "store", "yipanqi"},
    "node": {"core", "certs", "store", "yipanqi", "runtime"},
    "hub": {"core", "certs", "store", "yipanqi", "runtime"},
    "cli": {"core", "certs", "store", "yipanqi", "runtime", "node", "hub"},
    "bench": {"core", "certs", "store", "yipanqi", "runtime", "node", "hub", "bench", "tests"},
    "tests": {"core", "certs", "store", "yipanqi", "runtime", "node", "hub", "cli", "bench"},
}
PROJECT = set(LAYERS) | {"yipanqi"}

# One deliberate exception, read only when the command runs: `yipanqi demo` starts its local
# federation with the test launcher (tests/support/launcher.py), so it runs from a checkout.
ALLOWED = {("cli/demo.py", "tests.support.launcher")}

# core/ decides; it never reaches the network, a database, the clock, randomness or the OS.
CORE_FORBIDDEN = {
    "grpc", "grpc_health", "grpc_reflection", "google", "sqlalchemy", "alembic", "psycopg", "time", "os",
    "socket", "threading", "multiprocessing", "subprocess", "asyncio", "signal", "random", "secrets",
    "shutil", "tempfile", "yipanqi",
}
CORE_FORBIDDEN_CALLS = {"now", "today", "utcnow"}

# Only store/ talks to the database (and core/, certs/ not at all: CORE_FORBIDDEN covers core).
ABOVE_STORE = {"runtime", "node", "hub", "cli"}
DATABASE_MODULES = {"sqlalchemy", "alembic", "psycopg", "psycopg2", "sqlite3"}
DATABASE_ALLOWED = {
    # `yipanqi node backup` / `node restore` work on the SQLite file itself with the node's store not
    # open in this process (SQLite's online backup API; PRAGMA integrity_check of the restored copy).
    ("cli/run.py", "sqlite3"),
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, package: str) -> list[tuple[int, str, bool]]:
    """(line, absolute module name, runs at import time or call time) for every import in a module."""
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, runs: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runs)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, runs) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the module's own package
                base = package.split(".")[: max(0, package.count(".") + 1 - (node.level - 1))]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name, runs))
        for child in ast.iter_child_nodes(node):
            visit(child, runs)

    visit(tree, True)
    return found


def modules(root: Path) -> list[Path]:
    """Every Python file of the layered packages under root (generated protobuf code excluded)."""
    return sorted(p for top in LAYERS if (root / top).is_dir() for p in (root / top).rglob("*.py"))


def violations(root: Path) -> list[str]:
    out: list[str] = []
    for path in modules(root):
        rel = path.relative_to(root).as_posix()
        top = rel.split("/")[0]
        package = ".".join(path.relative_to(root).parent.parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for line, name, runs in _imports(tree, package):
            target = name.split(".")[0]
            where = f"{rel}:{line}"
            if target in PROJECT and target != top and target not in LAYERS[top] and (rel, name) not in ALLOWED:
                out.append(f"{where}: {top}/ may not import {target}/ ({name})")
            if top == "core" and runs and target in CORE_FORBIDDEN:
                out.append(f"{where}: core/ may not import {name} (pass the value in)")
            if top in ABOVE_STORE and target in DATABASE_MODULES and (rel, name) not in DATABASE_ALLOWED:
                out.append(f"{where}: {top}/ may not import {name} (the database is the store's: "
                           "catch core.errors.StoreUnavailable, use store.db for URLs)")
        if top == "core":
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in CORE_FORBIDDEN_CALLS):
                    out.append(f"{rel}:{node.lineno}: core/ may not call .{node.func.attr}() (pass the value in)")
    return out


def test_the_project_imports_only_downward() -> None:
    assert violations(ROOT) == []


def test_every_layer_is_read() -> None:
    # The check above is only as good as what it reads: every package is there and has modules.
    read = {p.relative_to(ROOT).parts[0] for p in modules(ROOT)}
    assert read == set(LAYERS)
    assert len(modules(ROOT)) > 150


def test_the_core_forbidden_list_names_real_modules() -> None:
    # A typo in CORE_FORBIDDEN would silently allow the module it meant.
    stdlib = {"time", "os", "socket", "threading", "multiprocessing", "subprocess", "asyncio", "signal",
              "random", "secrets", "shutil", "tempfile"}
    assert stdlib <= CORE_FORBIDDEN and stdlib <= set(sys.stdlib_module_names)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for top in LAYERS:
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


CLEAN = {
    "core/a.py": "from __future__ import annotations\nimport hashlib\nfrom typing import TYPE_CHECKING\n"
                 "if TYPE_CHECKING:\n    import random\n",
    "certs/a.py": "from core import a\n",
    "store/a.py": "import sqlalchemy\nfrom core.a import x\n",
    "runtime/a.py": "import grpc\nfrom store import a\nfrom certs.a import y\nfrom yipanqi.v2 import admin_pb2\n",
    "node/a.py": "from runtime import a\nfrom . import b\n",
    "hub/a.py": "from runtime.a import z\nfrom .a import w\n",
    "cli/a.py": "from node import a\nfrom hub import a as b\n",
    "bench/a.py": "from tests.support import launcher\nfrom hub import a\n",
    "tests/a.py": "from cli import a\nfrom bench import a as b\n",
}

BROKEN = {
    "core imports grpc": ("core/b.py", "import grpc\n", "core/ may not import grpc"),
    "core imports time in a function": ("core/b.py", "def f():\n    import time\n", "core/ may not import time"),
    "core imports os.path": ("core/b.py", "from os.path import join\n", "core/ may not import os.path"),
    "core imports sqlalchemy": ("core/b.py", "from sqlalchemy import select\n", "core/ may not import sqlalchemy"),
    "core imports random": ("core/b.py", "import random\n", "core/ may not import random"),
    "core reads the clock": ("core/b.py", "import datetime\nx = datetime.datetime.now()\n",
                             "core/ may not call .now()"),
    "core reads today": ("core/b.py", "from datetime import date\nx = date.today()\n", "core/ may not call .today()"),
    "core imports store": ("core/b.py", "from store import a\n", "core/ may not import store/"),
    "certs imports store": ("certs/b.py", "import store.a\n", "certs/ may not import store/"),
    "store imports runtime": ("store/b.py", "from runtime.a import x\n", "store/ may not import runtime/"),
    "store imports protobuf": ("store/b.py", "from yipanqi.v2 import admin_pb2\n", "store/ may not import yipanqi/"),
    "runtime imports node": ("runtime/b.py", "from node import a\n", "runtime/ may not import node/"),
    "runtime imports cli": ("runtime/b.py", "from cli.a import Config\n", "runtime/ may not import cli/"),
    "hub imports node": ("hub/b.py", "from node import a\n", "hub/ may not import node/"),
    "node imports hub in a function": ("node/b.py", "def f():\n    from hub.a import x\n",
                                       "node/ may not import hub/"),
    "node imports hub for type checking": ("node/b.py", "from typing import TYPE_CHECKING\n"
                                           "if TYPE_CHECKING:\n    from hub import a\n", "node/ may not import hub/"),
    "hub imports cli": ("hub/b.py", "import cli.a\n", "hub/ may not import cli/"),
    "bench imports cli": ("bench/b.py", "from cli.a import x\n", "bench/ may not import cli/"),
    "cli imports tests": ("cli/b.py", "from tests.support import launcher\n", "cli/ may not import tests/"),
    "runtime imports sqlalchemy": ("runtime/b.py", "import sqlalchemy\n", "runtime/ may not import sqlalchemy"),
    "runtime catches an sqlalchemy error": ("runtime/b.py", "def f():\n    from sqlalchemy.exc import OperationalError\n",
                                            "runtime/ may not import sqlalchemy.exc"),
    "node imports a driver": ("node/b.py", "import psycopg\n", "node/ may not import psycopg"),
    "hub imports sqlalchemy for types": ("hub/b.py", "from typing import TYPE_CHECKING\n"
                                         "if TYPE_CHECKING:\n    from sqlalchemy import Engine\n",
                                         "hub/ may not import sqlalchemy"),
    "cli imports sqlalchemy for a URL": ("cli/b.py", "def f():\n    from sqlalchemy import make_url\n",
                                         "cli/ may not import sqlalchemy"),
    "cli imports sqlite3 outside the backup commands": ("cli/b.py", "import sqlite3\n", "cli/ may not import sqlite3"),
    "relative import climbs into another package": ("node/sub/b.py", "from ...hub import a\n",
                                                   "node/ may not import hub/"),
}


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    assert violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_rule_fails_when_broken(tmp_path: Path, case: str) -> None:
    rel, text, message = BROKEN[case]
    found = violations(_tree(tmp_path, {**CLEAN, rel: text}))
    assert len(found) == 1 and found[0].startswith(f"{rel}:") and message in found[0], found
