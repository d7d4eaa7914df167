"""The federation secret: made with the CA, delivered sealed at enrolment to nodes and the
national hub only (never to regional hubs, never in clear), stored 0600, and checked at
start-up with the config key named."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any, Callable

import pytest
import tomli_w
import tomllib
from click.testing import CliRunner

from certs import secret as fed_secret
from runtime.config import ConfigError, load_hub, load_node
from cli.federation import init_federation
from cli.main import main
from core.errors import ValidationError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_seal_opens_only_with_the_requesters_key_and_for_its_identity(tmp_path: Path) -> None:
    secret = os.urandom(32)
    pub = fed_secret.new_seal_key(tmp_path / "a.key")
    fed_secret.new_seal_key(tmp_path / "b.key")
    assert _mode(tmp_path / "a.key") == 0o600
    sealed = fed_secret.seal(secret, pub, "province-44")
    assert secret not in base64.b64decode(sealed["ct"]) and base64.b64encode(secret).decode() not in json.dumps(sealed)
    assert fed_secret.unseal(sealed, tmp_path / "a.key", "province-44") == secret
    with pytest.raises(ValidationError, match="does not open"):
        fed_secret.unseal(sealed, tmp_path / "b.key", "province-44")  # another process's key
    with pytest.raises(ValidationError, match="does not open"):
        fed_secret.unseal(sealed, tmp_path / "a.key", "province-45")  # replayed to another identity
    tampered = {**sealed, "ct": base64.b64encode(b"\0" + base64.b64decode(sealed["ct"])[1:]).decode()}
    with pytest.raises(ValidationError, match="does not open"):
        fed_secret.unseal(tampered, tmp_path / "a.key", "province-44")
    with pytest.raises(ValidationError, match="missing"):
        fed_secret.unseal(None, tmp_path / "a.key", "province-44")


def test_read_checks_presence_mode_and_size(tmp_path: Path) -> None:
    path = tmp_path / "federation.secret"
    with pytest.raises(ValidationError, match="file not found"):
        fed_secret.read(path, "[node].federation_secret")
    fed_secret.create(path)
    assert _mode(path) == 0o600 and len(fed_secret.read(path, "k")) == 32
    with pytest.raises(FileExistsError):
        fed_secret.create(path)  # never replaced: every person key depends on it
    os.chmod(path, 0o644)
    with pytest.raises(ValidationError, match="readable by others"):
        fed_secret.read(path, "k")
    short = tmp_path / "short"
    short.write_bytes(b"x" * 16)
    os.chmod(short, 0o600)
    with pytest.raises(ValidationError, match="16 bytes"):
        fed_secret.read(short, "k")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return init_federation(tmp_path_factory.mktemp("fed"), ["44", "65"], 7000)


def _variant(original: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = tomllib.loads(original.read_text())
    change(data)
    path = original.with_name(f"variant-{os.urandom(4).hex()}.toml")
    path.write_text(tomli_w.dumps(data))
    return path


def test_init_gives_nodes_and_national_one_secret_and_regional_hubs_none(fed: dict[str, Path]) -> None:
    root = fed["hub-national"].parents[2]
    ca_secret = (root / "ca" / "federation.secret").read_bytes()
    assert len(ca_secret) == 32 and _mode(root / "ca" / "federation.secret") == 0o600
    for who in ("province-44", "province-65", "hub-national"):
        cfg = load_node(fed[who]) if who.startswith("province") else load_hub(fed[who])
        assert cfg.federation_secret is not None and cfg.federation_secret.read_bytes() == ca_secret
        assert _mode(cfg.federation_secret) == 0o600
    for who in ("hub-pearl", "hub-northwest"):
        assert load_hub(fed[who]).federation_secret is None
        assert not (fed[who].parent / "federation.secret").exists()
        assert ca_secret not in b"".join(p.read_bytes() for p in fed[who].parent.iterdir() if p.is_file())


@pytest.mark.parametrize("problem, expect", [("missing", "missing"), ("absent", "file not found"),
                                             ("short", "holds 31 bytes"), ("open", "readable by others")])
def test_a_bad_secret_stops_the_node_naming_the_key(fed: dict[str, Path], tmp_path: Path, problem: str,
                                                    expect: str) -> None:
    bad = tmp_path / "bad.secret"
    if problem == "short":
        bad.write_bytes(bytes(31))
        os.chmod(bad, 0o600)
    if problem == "open":
        bad.write_bytes(bytes(32))
        os.chmod(bad, 0o640)

    def change(d: dict[str, Any]) -> None:
        if problem == "missing":
            del d["node"]["federation_secret"]
        else:
            d["node"]["federation_secret"] = str(bad)

    with pytest.raises(ConfigError) as err:
        load_node(_variant(fed["province-44"], change))
    assert err.value.field == "[node].federation_secret" and expect in err.value.reason


def test_a_regional_hub_config_holding_the_secret_is_refused(fed: dict[str, Path]) -> None:
    national_secret = fed["hub-national"].parent / "federation.secret"
    path = _variant(fed["hub-pearl"], lambda d: d["hub"].update(federation_secret=str(national_secret)))
    with pytest.raises(ConfigError) as err:
        load_hub(path)
    assert err.value.field == "[hub].federation_secret" and "must not hold" in err.value.reason
    with pytest.raises(ConfigError) as err:
        load_hub(_variant(fed["hub-national"], lambda d: d["hub"].pop("federation_secret")))
    assert err.value.field == "[hub].federation_secret"


def test_enrolment_delivers_the_secret_sealed_to_nodes_and_national_only(tmp_path: Path) -> None:
    cli = CliRunner()
    root = tmp_path / "fed"
    assert cli.invoke(main, ["federation", "ca", str(root)]).exit_code == 0
    ca_secret = (root / "ca" / "federation.secret").read_bytes()
    dirs = {"national": tmp_path / "national", "pearl": tmp_path / "pearl", "44": tmp_path / "44"}
    for name, port in (("national", 7000), ("pearl", 7003)):
        r = cli.invoke(main, ["enrol", "hub", name, "--address", f"127.0.1.1:{port}", str(dirs[name])])
        assert r.exit_code == 0, r.output
    assert cli.invoke(main, ["enrol", "node", "44", "--address", "127.0.1.44:7144", str(dirs["44"])]).exit_code == 0
    requests = {n: json.loads((d / "request.json").read_text()) for n, d in dirs.items()}
    assert "secret_pub" in requests["national"] and "secret_pub" in requests["44"]
    assert "secret_pub" not in requests["pearl"] and not (dirs["pearl"] / "secret.key").exists()
    assert _mode(dirs["44"] / "secret.key") == 0o600
    r = cli.invoke(main, ["federation", "sign", str(root), *(str(d / "request.json") for d in dirs.values())])
    assert r.exit_code == 0, r.output
    files = {n: d / f"{'province-' if n == '44' else 'hub-'}{n}.certificates.json" for n, d in dirs.items()}
    for f in files.values():  # the certificates file never carries the secret in clear
        text = f.read_text()
        assert base64.b64encode(ca_secret).decode() not in text and ca_secret.hex() not in text
    assert json.loads(files["pearl"].read_text())["federation_secret"] is None
    for name, d in dirs.items():
        kind = "node" if name == "44" else "hub"
        r = cli.invoke(main, ["enrol", kind, name, str(d), "--certificates", str(files[name])])
        assert r.exit_code == 0, r.output
    for name in ("national", "44"):
        assert (dirs[name] / "federation.secret").read_bytes() == ca_secret
        assert _mode(dirs[name] / "federation.secret") == 0o600
    assert load_node(dirs["44"] / "node.toml").federation_secret == (dirs["44"] / "federation.secret").resolve()
    assert load_hub(dirs["national"] / "hub.toml").federation_secret is not None
    assert not (dirs["pearl"] / "federation.secret").exists() and load_hub(dirs["pearl"] / "hub.toml").federation_secret is None


def test_a_certificates_file_sealed_to_another_process_is_refused(tmp_path: Path) -> None:
    cli = CliRunner()
    root = tmp_path / "fed"
    assert cli.invoke(main, ["federation", "ca", str(root)]).exit_code == 0
    for name, port in (("national", 7000), ("pearl", 7003)):
        assert cli.invoke(main, ["enrol", "hub", name, "--address", f"127.0.1.1:{port}", str(tmp_path / name)]).exit_code == 0
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert cli.invoke(main, ["enrol", "node", "44", "--address", "127.0.1.44:7144", str(d)]).exit_code == 0
    r = cli.invoke(main, ["federation", "sign", str(root), str(tmp_path / "national" / "request.json"),
                          str(tmp_path / "pearl" / "request.json"), str(a / "request.json")])
    assert r.exit_code == 0, r.output
    doc = json.loads((a / "province-44.certificates.json").read_text())
    # b's own certificates will not match b's keys anyway; give b a's sealed secret only, with b's certs
    assert cli.invoke(main, ["federation", "sign", str(root), str(b / "request.json")]).exit_code == 0
    mine = json.loads((b / "province-44.certificates.json").read_text())
    mine["federation_secret"] = doc["federation_secret"]
    forged = b / "forged.json"
    forged.write_text(json.dumps(mine))
    r = cli.invoke(main, ["enrol", "node", "44", str(b), "--certificates", str(forged)])
    assert r.exit_code != 0 and "federation_secret" in r.output and "does not open" in r.output
    assert not (b / "federation.secret").exists()


def test_issue_of_a_node_or_the_national_hub_at_the_ca_includes_the_secret(fed: dict[str, Path], tmp_path: Path) -> None:
    root = fed["hub-national"].parents[2]
    ca_secret = (root / "ca" / "federation.secret").read_bytes()
    cli = CliRunner()
    for identity, out in (("province-44", tmp_path / "n44"), ("hub-national", tmp_path / "nat"),
                          ("hub-pearl", tmp_path / "pearl")):
        r = cli.invoke(main, ["federation", "issue", str(root), identity, "--out", str(out)])
        assert r.exit_code == 0, r.output
        secret = out / "federation.secret"
        assert secret.exists() == (identity != "hub-pearl")
        if secret.exists():
            assert secret.read_bytes() == ca_secret and _mode(secret) == 0o600
