"""Strict configs: an unknown key or section is an error that names it and suggests the nearest
known name; the known names come from the config dataclasses. Plus state_dir (where the store
lives) and the PostgreSQL password rule."""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from runtime.config import ConfigError, HubConfig, NodeConfig, TLSPaths, known_keys, load_hub, load_node
from cli.federation import init_federation

_names = itertools.count()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return init_federation(tmp_path_factory.mktemp("strict"), ["11"], 7000)


def _variant(original: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = tomllib.loads(original.read_text(encoding="utf-8"))
    change(data)
    path = original.with_name(f"strict-{next(_names)}.toml")
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _message(loader: Callable[[Path], object], path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        loader(path)
    return str(info.value)


def test_a_typo_in_tls_names_the_key_and_the_nearest(fed: dict[str, Path]) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["tls"]["revoke"] = d["tls"].pop("revoked")

    path = _variant(fed["province-11"], typo)
    assert _message(load_node, path) == f"{path}: [tls].revoke: unknown key; did you mean [tls].revoked?"


@pytest.mark.parametrize("section,key,nearest", [
    ("node", "metric_port", "[node].metrics_port"),
    ("node", "databse", "[node].database"),
    ("signing", "crt", "[signing].cert"),
    ("operator", "keys", "[operator].key"),
])
def test_unknown_node_keys(fed: dict[str, Path], section: str, key: str, nearest: str) -> None:
    path = _variant(fed["province-11"], lambda d: d[section].__setitem__(key, "x"))
    assert _message(load_node, path) == f"{path}: [{section}].{key}: unknown key; did you mean {nearest}?"


def test_unknown_key_in_a_list_of_tables(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-11"], lambda d: d["hubs"][1].__setitem__("adress", "x"))
    assert _message(load_node, path) == f"{path}: [[hubs]][1].adress: unknown key; did you mean [[hubs]][1].address?"


def test_unknown_section_names_the_nearest(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-11"], lambda d: d.__setitem__("signin", {"cert": "x"}))
    assert _message(load_node, path) == f"{path}: [signin]: unknown section; did you mean [signing]?"
    path = _variant(fed["hub-bohai"], lambda d: d.__setitem__("guest", {"pearl": ["44"]}))
    assert _message(load_hub, path) == f"{path}: [guest]: unknown section; did you mean [guests]?"


def test_a_key_in_the_wrong_section_points_at_its_section(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-bohai"], lambda d: d["hub"].__setitem__("revoked", "x"))
    assert _message(load_hub, path) == f"{path}: [hub].revoked: unknown key; did you mean [tls].revoked?"


def test_nothing_close_gets_no_suggestion(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-national"], lambda d: d["hub"].__setitem__("zzzzzz", 1))
    assert _message(load_hub, path) == f"{path}: [hub].zzzzzz: unknown key"


def test_region_names_are_free(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-bohai"], lambda d: d["guests"].__setitem__("anything", ["44"]) if "guests" in d
                    else d.__setitem__("guests", {"anything": ["44"]}))
    assert load_hub(path).guests == {"anything": ("44",)}


def test_known_keys_follow_the_dataclasses() -> None:
    own, sections = known_keys(NodeConfig)
    assert own == {"province", "database", "listen", "log_level", "metrics_port", "state_dir",
                   "federation_secret"}
    assert set(sections) == {"tls", "signing", "hubs", "operator", "timing"} and sections["tls"] is TLSPaths
    # A field another change adds to a config dataclass is known without touching the checker.
    Extended = dataclasses.make_dataclass("Extended", [("retry_s", float, dataclasses.field(default=1.0))],
                                          bases=(HubConfig,), frozen=True)
    own, sections = known_keys(Extended)
    assert "retry_s" in own and "upstream" in sections


def test_state_dir_holds_the_store(fed: dict[str, Path], tmp_path: Path) -> None:
    path = _variant(fed["province-11"], lambda d: d["node"].__setitem__("state_dir", str(tmp_path / "state")))
    cfg = load_node(path)
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.database == f"sqlite:///{tmp_path / 'state' / 'node.db'}"
    # Relative: to the config file's directory, like every other path.
    path = _variant(fed["province-11"], lambda d: d["node"].__setitem__("state_dir", "var"))
    assert load_node(path).database == f"sqlite:///{path.parent / 'var' / 'node.db'}"


def test_no_postgresql_password_in_a_config(fed: dict[str, Path]) -> None:
    for url in ("postgresql+psycopg://yipanqi:secret@db.example/yipanqi",
                "postgresql+psycopg://yipanqi@db.example/yipanqi?password=secret"):
        path = _variant(fed["province-11"], lambda d: d["node"].__setitem__("database", url))
        text = _message(load_node, path)
        assert "[node].database: holds a password" in text and "secret" not in text
    path = _variant(fed["province-11"],
                    lambda d: d["node"].__setitem__("database", "postgresql+psycopg://yipanqi@db.example/yipanqi"))
    assert load_node(path).database == "postgresql+psycopg://yipanqi@db.example/yipanqi"


@pytest.mark.parametrize("listen,ok", [("[::1]:7000", True), ("node44.example:7144", True), ("::1:7000", False),
                                       ("bad host:7000", False)])
def test_listen_addresses(fed: dict[str, Path], listen: str, ok: bool) -> None:
    path = _variant(fed["province-11"], lambda d: d["node"].__setitem__("listen", listen))
    if ok:
        assert load_node(path).listen == listen
    else:
        assert _message(load_node, path).startswith(f"{path}: [node].listen: ")
