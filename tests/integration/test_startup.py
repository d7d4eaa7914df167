"""Start-up as an installer meets it: every failure is one line naming the address (or the
store), a non-zero exit and no traceback; a second instance on an address is refused; IPv6
listen addresses work, metrics included."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from cli.federation import HUB_ORDER, init_federation
from tests.support.launcher import Federation
from tests.integration.conftest import ROOT, Fed, eventually, running, yipanqi


def _free(host: str, ports: list[int]) -> bool:
    for port in ports:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _base(host: str) -> int:
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 50000, 300)
        if _free(host, [base + i for i in range(len(HUB_ORDER))] + [base + 10 + i for i in range(len(HUB_ORDER))]):
            return base
    raise RuntimeError("no free ports")


def _run(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`yipanqi hub run`, expected to fail at start."""
    return subprocess.run([sys.executable, "-m", "cli.main", "hub", "run", "-c", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def national(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fed, Path, dict]]:
    root = tmp_path_factory.mktemp("startup")
    configs = init_federation(root, ["11"], _base("127.0.0.1"))
    fed = Fed(Federation(root, {"hub-national": configs["hub-national"]}))
    with running(fed, lambda: fed.start("hub-national")):
        yield fed, configs["hub-national"], tomllib.loads(configs["hub-national"].read_text())


def _variant(config: Path, change) -> Path:  # type: ignore[no-untyped-def]
    data = tomllib.loads(config.read_text())
    change(data)
    path = config.with_name(f"variant-{random.randrange(10**9)}.toml")
    path.write_text(tomli_w.dumps(data))
    return path


def test_a_second_instance_on_the_same_address_is_refused(national: tuple[Fed, Path, dict]) -> None:
    fed, config, data = national
    listen = data["hub"]["listen"]
    line = _one_line(_run(config))
    assert line == f"Error: hub-national: cannot listen on {listen}: address already in use (is another instance running?)"
    assert fed.status("hub-national")["role"] == "hub"  # the first one is untouched


def test_port_in_use_by_another_program(national: tuple[Fed, Path, dict]) -> None:
    _, config, _ = national
    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = f"127.0.0.1:{other.getsockname()[1]}"
        path = _variant(config, lambda d: (d["hub"].__setitem__("listen", taken), d["hub"].pop("metrics_port")))
        assert _one_line(_run(path)) == f"Error: hub-national: cannot listen on {taken}: address already in use " \
                                        "(is another instance running?)"


def test_metrics_port_in_use(national: tuple[Fed, Path, dict]) -> None:
    _, config, data = national
    with socket.create_server(("127.0.0.1", 0)) as grpc_free, socket.create_server(("127.0.0.1", 0)) as other:
        port = grpc_free.getsockname()[1]
        grpc_free.close()
        metrics = other.getsockname()[1]
        path = _variant(config, lambda d: (d["hub"].__setitem__("listen", f"127.0.0.1:{port}"),
                                           d["hub"].__setitem__("metrics_port", metrics)))
        assert _one_line(_run(path)) == f"Error: hub-national: cannot serve metrics on 127.0.0.1:{metrics}: " \
                                        "address already in use (is another instance running?)"


def test_an_address_that_is_not_this_machines(national: tuple[Fed, Path, dict]) -> None:
    _, config, _ = national
    path = _variant(config, lambda d: d["hub"].__setitem__("listen", "192.0.2.1:7000"))  # TEST-NET-1
    assert _one_line(_run(path)) == "Error: hub-national: cannot listen on 192.0.2.1:7000: cannot assign requested address"
    path = _variant(config, lambda d: d["hub"].__setitem__("listen", "no-such-host.invalid:7000"))
    assert _one_line(_run(path)).startswith("Error: hub-national: cannot listen on no-such-host.invalid:7000: unknown host")


def test_a_state_dir_that_cannot_be_made(national: tuple[Fed, Path, dict], tmp_path: Path) -> None:
    _, config, _ = national
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    (tmp_path / "a-file").write_text("")
    state = tmp_path / "a-file" / "state"
    path = _variant(config, lambda d: (d["hub"].__setitem__("listen", f"127.0.0.1:{port}"), d["hub"].pop("metrics_port"),
                                       d["hub"].__setitem__("state_dir", str(state))))
    r = _run(path)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"Error: hub-national: cannot start: not a directory: {state}"


def test_an_unknown_config_key_stops_the_start(national: tuple[Fed, Path, dict]) -> None:
    _, config, _ = national
    path = _variant(config, lambda d: d["tls"].__setitem__("revoke", d["tls"].pop("revoked")))
    assert _one_line(_run(path)) == f"Error: {path}: [tls].revoke: unknown key; did you mean [tls].revoked?"


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6(), reason="no IPv6 loopback")
def test_ipv6_listen_addresses_with_metrics(tmp_path: Path) -> None:
    base = _base("::1")
    addresses = {"national": f"[::1]:{base}", "bohai": f"[::1]:{base + 1}", "11": f"[::1]:{base + 50}"}
    configs = init_federation(tmp_path / "fed", ["11"], base, addresses)
    hubs = {i: configs[i] for i in ("hub-national", "hub-bohai")}
    fed = Fed(Federation(tmp_path / "fed", hubs))
    with running(fed, lambda: [fed.start(i) for i in hubs]):
        # bohai reaches national over IPv6, verifying national's certificate names ::1.
        eventually(lambda: fed.status("hub-bohai")["upstream"]["connected"], 30)
        for identity, path in hubs.items():
            port = tomllib.loads(path.read_text())["hub"]["metrics_port"]
            with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as reply:
                assert b"yipanqi_quarantine_size" in reply.read(), identity
        r = yipanqi("status", "-c", hubs["hub-bohai"], "--json")
        assert r.returncode == 0, r.stderr
