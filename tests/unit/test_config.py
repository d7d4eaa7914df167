"""Node and hub config loading: every mistake names the key and the problem.

The configs are the ones ``federation init`` writes, then broken one key at a
time; each broken file sits beside the original so relative paths resolve the
same way.
"""

from __future__ import annotations

import copy
import itertools
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from runtime.config import ConfigError, HubConfig, NodeConfig, load_any, load_hub, load_node
from cli.federation import init_federation

BASE = 7000
_names = itertools.count()


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return init_federation(tmp_path_factory.mktemp("cfg"), ["11", "44"], BASE)


def _variant(original: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = tomllib.loads(original.read_text(encoding="utf-8"))
    change(data)
    path = original.with_name(f"variant-{next(_names)}.toml")
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _raises(loader: Callable[[Path], object], path: Path, key: str, *problem: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loader(path)
    err = info.value
    text = str(err)
    assert text.startswith(f"{path}: {key}: "), text
    for words in problem:
        assert words in text, text
    assert err.field == key
    return err


# -- valid configs ----------------------------------------------------------------

def test_generated_node_config_loads(fed: dict[str, Path]) -> None:
    path = fed["province-44"]
    cfg = load_node(path)
    assert isinstance(cfg, NodeConfig)
    assert cfg.identity == "province-44" and cfg.province == "44"
    assert cfg.listen == f"127.0.0.1:{BASE + 144}"
    assert cfg.metrics_port == BASE + 244
    assert cfg.log_level == "info"
    assert cfg.database == f"sqlite:///{path.parent.resolve() / 'node.db'}"
    assert [h.identity for h in cfg.hubs] == ["hub-pearl", "hub-national"]
    assert cfg.hubs[0].address == f"127.0.0.1:{BASE + 3}"
    for p in (cfg.tls.ca, cfg.tls.cert, cfg.tls.key, cfg.signing.cert, cfg.signing.key):
        assert p.is_absolute() and p.is_file() and p.parent == path.parent.resolve()
    assert cfg.tls.revoked is not None and cfg.tls.revoked.name == "revoked.txt"
    assert cfg.operator is not None and cfg.operator.cert.parent.name == "44"
    assert load_any(path) == cfg


def test_generated_hub_configs_load(fed: dict[str, Path]) -> None:
    national = load_hub(fed["hub-national"])
    assert isinstance(national, HubConfig)
    assert national.national and national.upstream is None
    assert national.identity == "hub-national"
    assert national.metrics_port == BASE + 10
    pearl = load_hub(fed["hub-pearl"])
    assert not pearl.national
    assert pearl.upstream is not None and pearl.upstream.identity == "hub-national"
    assert pearl.upstream.address == f"127.0.0.1:{BASE}"
    assert "44" in pearl.regions["pearl"] and "11" in pearl.regions["bohai"]
    assert pearl.metrics_port == BASE + 13
    assert load_any(fed["hub-bohai"]) == load_hub(fed["hub-bohai"])


# -- node errors ------------------------------------------------------------------

@pytest.mark.parametrize("section", ["node", "tls", "signing"])
def test_node_missing_section(fed: dict[str, Path], section: str) -> None:
    path = _variant(fed["province-44"], lambda d: d.pop(section))
    _raises(load_node, path, f"[{section}]", "missing section")


@pytest.mark.parametrize(("section", "key"), [
    ("node", "province"), ("node", "database"), ("node", "listen"),
    ("tls", "ca"), ("tls", "cert"), ("tls", "key"), ("signing", "cert"), ("signing", "key"),
])
def test_node_missing_key(fed: dict[str, Path], section: str, key: str) -> None:
    path = _variant(fed["province-44"], lambda d: d[section].pop(key))
    _raises(load_node, path, f"[{section}].{key}", "missing")


def test_node_empty_string_key(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["node"].update(database=""))
    _raises(load_node, path, "[node].database", "must be a non-empty string")


@pytest.mark.parametrize("code", ["99", "71", "4", "440"])
def test_node_unknown_province(fed: dict[str, Path], code: str) -> None:
    path = _variant(fed["province-44"], lambda d: d["node"].update(province=code))
    _raises(load_node, path, "[node].province", "unknown province code", repr(code))


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:", ":7144", "127.0.0.1:http", "127.0.0.1:0",
                                    "127.0.0.1:70000"])
def test_node_bad_listen_address(fed: dict[str, Path], listen: str) -> None:
    path = _variant(fed["province-44"], lambda d: d["node"].update(listen=listen))
    _raises(load_node, path, "[node].listen", "is not host:port", repr(listen))


@pytest.mark.parametrize("key", ["ca", "cert", "key"])
def test_node_missing_tls_file(fed: dict[str, Path], key: str) -> None:
    path = _variant(fed["province-44"], lambda d: d["tls"].update({key: "nowhere/absent.pem"}))
    _raises(load_node, path, f"[tls].{key}", "file not found", "absent.pem")


def test_node_missing_signing_file(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["signing"].update(key="gone.key"))
    _raises(load_node, path, "[signing].key", "file not found", "gone.key")


def test_node_missing_operator_file(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["operator"].update(cert="no-such-operator.crt"))
    _raises(load_node, path, "[operator].cert", "file not found")


def test_node_missing_revocation_list(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["tls"].update(revoked="no-revoked.txt"))
    _raises(load_node, path, "[tls].revoked", "file not found")


def test_node_without_operator_section_loads_without_operator(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d.pop("operator"))
    assert load_node(path).operator is None


@pytest.mark.parametrize("level", ["verbose", "INFO", "", 3])
def test_node_bad_log_level(fed: dict[str, Path], level: object) -> None:
    path = _variant(fed["province-44"], lambda d: d["node"].update(log_level=level))
    _raises(load_node, path, "[node].log_level", "is not one of debug, info, warning, error")


@pytest.mark.parametrize("port", [-1, 65536, "7244", 1.5, True])
def test_node_bad_metrics_port(fed: dict[str, Path], port: object) -> None:
    path = _variant(fed["province-44"], lambda d: d["node"].update(metrics_port=port))
    _raises(load_node, path, "[node].metrics_port", "must be a port number")


@pytest.mark.parametrize("hubs", [None, [], "pearl"])
def test_node_without_hubs(fed: dict[str, Path], hubs: object) -> None:
    def change(d: dict[str, Any]) -> None:
        if hubs is None:
            d.pop("hubs")
        else:
            d["hubs"] = hubs

    path = _variant(fed["province-44"], change)
    _raises(load_node, path, "[[hubs]]", "at least one hub")


def test_node_hub_entry_bad_address(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["hubs"][1].update(address="national-hub"))
    _raises(load_node, path, "[[hubs]][1].address", "'national-hub' is not host:port")


def test_node_hub_entry_missing_name(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["hubs"][0].pop("name"))
    _raises(load_node, path, "[[hubs]][0].name", "missing")


def test_node_hub_entry_unknown_hub(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d["hubs"][0].update(name="atlantis"))
    _raises(load_node, path, "[[hubs]][0].name", "unknown hub 'atlantis'")


def test_node_section_not_a_table(fed: dict[str, Path]) -> None:
    path = _variant(fed["province-44"], lambda d: d.update(signing="sign.key"))
    _raises(load_node, path, "[signing]", "must be a table")


def test_missing_file_and_bad_toml(fed: dict[str, Path], tmp_path: Path) -> None:
    absent = tmp_path / "absent.toml"
    _raises(load_node, absent, "file", "not found")
    _raises(load_any, absent, "file", "not found")
    broken = tmp_path / "broken.toml"
    broken.write_text("[node\nprovince = 44\n")
    _raises(load_node, broken, "file", "not valid TOML")
    neither = tmp_path / "neither.toml"
    neither.write_text('[something]\nx = "y"\n')
    _raises(load_any, neither, "file", "neither a [node] nor a [hub] config")


def test_error_is_a_validation_error_with_the_file(fed: dict[str, Path]) -> None:
    from core.errors import ValidationError

    path = _variant(fed["province-44"], lambda d: d["tls"].update(cert="missing.crt"))
    err = _raises(load_node, path, "[tls].cert", "file not found")
    assert isinstance(err, ValidationError)
    assert err.file == path.resolve()


# -- hub errors -------------------------------------------------------------------

@pytest.mark.parametrize("hub", ["hub-pearl", "hub-bohai"])
def test_regional_hub_without_upstream(fed: dict[str, Path], hub: str) -> None:
    path = _variant(fed[hub], lambda d: d.pop("upstream"))
    _raises(load_hub, path, "[upstream]", "regional hub needs its upstream")


def test_national_hub_needs_no_upstream(fed: dict[str, Path]) -> None:
    assert "upstream" not in tomllib.loads(fed["hub-national"].read_text())
    assert load_hub(fed["hub-national"]).upstream is None


def test_hub_upstream_bad_address(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d["upstream"].update(address="127.0.0.1"))
    _raises(load_hub, path, "[upstream].address", "'127.0.0.1' is not host:port")


def test_hub_upstream_unknown_hub(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d["upstream"].update(name="moon"))
    _raises(load_hub, path, "[upstream].name", "unknown hub 'moon'")


@pytest.mark.parametrize("section", ["hub", "tls"])
def test_hub_missing_section(fed: dict[str, Path], section: str) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d.pop(section))
    _raises(load_hub, path, f"[{section}]", "missing section")


@pytest.mark.parametrize(("section", "key"), [("hub", "name"), ("hub", "listen"), ("hub", "database"),
                                              ("tls", "key")])
def test_hub_missing_key(fed: dict[str, Path], section: str, key: str) -> None:
    path = _variant(fed["hub-national"], lambda d: d[section].pop(key))
    _raises(load_hub, path, f"[{section}].{key}", "missing")


def test_hub_unknown_name(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d["hub"].update(name="gobi"))
    _raises(load_hub, path, "[hub].name", "unknown hub 'gobi'")


def test_hub_bad_listen(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-national"], lambda d: d["hub"].update(listen="127.0.0.1:99999"))
    _raises(load_hub, path, "[hub].listen", "is not host:port")


def test_hub_missing_tls_cert_file(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d["tls"].update(cert="elsewhere.crt"))
    _raises(load_hub, path, "[tls].cert", "file not found", "elsewhere.crt")


def test_hub_bad_log_level(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d["hub"].update(log_level="trace"))
    _raises(load_hub, path, "[hub].log_level", "'trace' is not one of")


def test_hub_bad_regions(fed: dict[str, Path]) -> None:
    path = _variant(fed["hub-pearl"], lambda d: d["regions"].update(pearl=["44", "99"]))
    _raises(load_hub, path, "[regions].pearl", "must be a list of province codes")


def test_hub_region_of_its_own_missing(fed: dict[str, Path]) -> None:
    def change(d: dict[str, Any]) -> None:
        regions = copy.deepcopy(d["regions"])
        regions.pop("pearl")
        d["regions"] = regions

    path = _variant(fed["hub-pearl"], change)
    _raises(load_hub, path, "[regions]", "no region for hub 'pearl'")


def test_node_config_given_to_hub_loader(fed: dict[str, Path]) -> None:
    _raises(load_hub, fed["province-44"], "[hub]", "missing section")
    _raises(load_node, fed["hub-pearl"], "[node]", "missing section")
