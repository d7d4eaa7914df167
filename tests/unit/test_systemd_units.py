"""The shipped systemd units: valid for this systemd (`systemd-analyze verify`), hardened
(`systemd-analyze security --offline=yes` scores each at most 2.5) and pointing at the
install layout of docs/operations.md ("Install on a real machine")."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
ROLES = ["node", "hub"]
MAX_EXPOSURE = 2.5

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def _directives(role: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / f"yipanqi-{role}.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file-system root with the units installed where the walk-through puts them, the
    executable they start, and this machine's own system units (targets) to resolve against."""
    root = tmp_path_factory.mktemp("root")
    (root / "etc/systemd/system").mkdir(parents=True)
    for role in ROLES:
        shutil.copy(UNITS / f"yipanqi-{role}.service", root / "etc/systemd/system")
    exe = root / "opt/yipanqi/.venv/bin/yipanqi"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    system = Path("/usr/lib/systemd/system")
    if system.is_dir():
        shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    return root


def test_units_verify(root: Path) -> None:
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}", *(f"yipanqi-{x}.service" for x in ROLES)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr + r.stdout


@pytest.mark.parametrize("role", ROLES)
def test_unit_exposure_is_at_most_2_5(role: str) -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                        str(UNITS / f"yipanqi-{role}.service")], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
    assert found, r.stdout + r.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, r.stdout


@pytest.mark.parametrize("role", ROLES)
def test_unit_runs_the_installed_layout(role: str) -> None:
    d = _directives(role)
    assert d["ExecStart"] == [f"/opt/yipanqi/.venv/bin/yipanqi {role} run -c /etc/yipanqi/{role}/{role}.toml"]
    assert d["User"] == ["yipanqi"] and d["StateDirectory"] == [f"yipanqi/{role}"]
    assert d["WorkingDirectory"] == [f"/var/lib/yipanqi/{role}"]
    assert d["UMask"] == ["0077"] and d["CapabilityBoundingSet"] == [""]
    assert d["ProtectSystem"] == ["strict"]  # /etc/yipanqi read-only, only the state directory writable
    for key in ("PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                "NoNewPrivileges", "ProtectControlGroups", "RestrictNamespaces", "LockPersonality"):
        assert d[key] == ["yes"], key
    assert d["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in d["SystemCallFilter"]
