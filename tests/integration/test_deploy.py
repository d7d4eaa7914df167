"""A federation installed the way docs/operations.md says ("Install on a real machine"):
every hub and node on its own loopback address, enrolled with `yipanqi enrol` on its own
"machine" (directory) and `yipanqi federation sign` at the CA, so no private key leaves
the directory it was made in; configs in one directory, stores in a separate state_dir;
standard TLS hostname verification everywhere.

Provinces 11 (bohai) and 65 (northwest), so a change from 11 to 65 crosses hub-bohai,
hub-national and hub-northwest. hub-national is dialled by a DNS name (localhost), the
others by IP (127.0.1.x).
"""

from __future__ import annotations

import base64

import json
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
import tomllib

from tests.support.launcher import Federation
from tests.integration.conftest import Fed, eventually, person, running, yipanqi, yipanqi_ok

# name -> (kind, loopback host): one "machine" each.
MACHINES = {
    "national": ("hub", "localhost"),
    "bohai": ("hub", "127.0.1.2"),
    "northwest": ("hub", "127.0.1.5"),
    "11": ("node", "127.0.1.11"),
    "65": ("node", "127.0.1.65"),
}
WRONG_HOST = "127.0.1.99"


def _free_port(host: str) -> int:
    with socket.create_server((host, 0)) as s:
        return s.getsockname()[1]


def _identity(name: str) -> str:
    return f"hub-{name}" if MACHINES[name][0] == "hub" else f"province-{name}"


def _private_keys(under: Path) -> set[Path]:
    return {p for p in under.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()}


class Forwarder:
    """A TCP relay on ``listen`` to ``target``: the same server reached at an address its
    certificate does not name (what a wrong DNS entry or a NAT would do)."""

    def __init__(self, host: str, target: tuple[str, int]) -> None:
        self.server = socket.create_server((host, 0))
        self.address = f"{host}:{self.server.getsockname()[1]}"
        self.target = target
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fed, dict[str, Path], Path]]:
    root = tmp_path_factory.mktemp("deploy")
    ca = root / "ca-machine"
    yipanqi_ok("federation", "ca", ca)
    etc = {name: root / name / "etc" for name in MACHINES}  # /etc/yipanqi/<role> on that machine
    state = {name: root / name / "var" for name in MACHINES}  # /var/lib/yipanqi/<role>
    addresses = {name: f"{host}:{_free_port(host)}" for name, (_, host) in MACHINES.items()}

    # 1. On each machine: its own keys and a request.
    for name, (kind, _) in MACHINES.items():
        yipanqi_ok("enrol", kind, name, "--address", addresses[name], etc[name])
    # 2. Only the requests travel to the CA ...
    inbox, outbox = root / "ca-inbox", root / "ca-outbox"
    inbox.mkdir()
    for name in MACHINES:
        shutil.copy(etc[name] / "request.json", inbox / f"{name}.request.json")
    yipanqi_ok("federation", "sign", ca, *sorted(inbox.iterdir()), "--out", outbox)
    # 3. ... and the certificates come back.
    configs = {}
    for name, (kind, _) in MACHINES.items():
        certs = outbox / f"{_identity(name)}.certificates.json"
        yipanqi_ok("enrol", kind, name, etc[name], "--certificates", certs, "--state-dir", state[name])
        configs[_identity(name)] = etc[name] / f"{kind}.toml"

    fed = Fed(Federation(root, configs))
    with running(fed, fed.start_all):
        yield fed, etc, root


def test_enrolment_moves_no_private_key(enrolled: tuple[Fed, dict[str, Path], Path]) -> None:
    fed, etc, root = enrolled
    # The CA machine and everything that travelled hold no private key but the CA's own.
    assert _private_keys(root / "ca-machine") == {root / "ca-machine" / "ca" / "ca.key"}
    assert _private_keys(root / "ca-inbox") == set() and _private_keys(root / "ca-outbox") == set()
    fed_secret = (root / "ca-machine" / "ca" / "federation.secret").read_bytes()
    for travelled in (root / "ca-outbox").iterdir():  # sealed to each enrolling process, never in clear
        text = travelled.read_text()
        assert base64.b64encode(fed_secret).decode() not in text and fed_secret.hex() not in text
    for name in MACHINES:
        keys = _private_keys(root / name)
        expected = {etc[name] / "tls.key", etc[name] / "sign.key", etc[name] / "operator" / "tls.key"}
        if name == "national" or name.isdigit():  # the X25519 key the federation secret was sealed to
            expected.add(etc[name] / "secret.key")
        assert keys == expected, name
        # The federation secret reached nodes and the national hub (0600), never a regional hub.
        secret = etc[name] / "federation.secret"
        assert secret.exists() == (name == "national" or name.isdigit()), name
        if secret.exists():
            assert secret.read_bytes() == (root / "ca-machine" / "ca" / "federation.secret").read_bytes()
            assert secret.stat().st_mode & 0o777 == 0o600
        assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
        # The store is in the state directory, nothing in the config directory.
        assert list((root / name / "var").glob("*.db")), name
        assert not list(etc[name].glob("*.db")), name


def test_a_change_goes_from_11_to_65_with_hostname_verification(enrolled: tuple[Fed, dict[str, Path], Path]) -> None:
    fed, _, _ = enrolled
    rng = random.Random(13)
    written = fed.write("province-11", "create", person(rng, household="11", residence="65"))
    pid = written["person_id"]
    got = fed.arrives("province-65", pid, written, timeout=40)
    assert got["household_province"] == "11" and got["residence_province"] == "65"
    # By the regional path: each node on its home hub, not a fallback.
    for node, hub in (("province-11", "bohai"), ("province-65", "northwest")):
        link = fed.status(node)["hub"]
        assert link["connected"] and link["hub"] == hub and not link["fallback"], link
    upstream = fed.status("hub-northwest")["upstream"]
    assert upstream["connected"] and upstream["hub"] == "national"


def _s_client(etc: Path, address: str, *verify: str) -> subprocess.CompletedProcess[str]:
    host, _, port = address.rpartition(":")
    op = etc / "operator"
    return subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", str(etc / "ca.crt"),
                           "-cert", str(op / "tls.crt"), "-key", str(op / "tls.key"), "-verify_return_error",
                           "-brief", *verify], input="", capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_the_hosts_names(enrolled: tuple[Fed, dict[str, Path], Path]) -> None:
    fed, etc, _ = enrolled
    national = tomllib.loads((etc["national"] / "hub.toml").read_text())["hub"]["listen"]
    # (The exit status says nothing here: the server drops a client that speaks no HTTP/2.)
    ok = _s_client(etc["national"], national, "-verify_hostname", "localhost")
    assert "Verification: OK" in ok.stderr and "Verified peername: localhost" in ok.stderr, ok.stderr
    bohai = tomllib.loads((etc["bohai"] / "hub.toml").read_text())["hub"]["listen"]
    ok = _s_client(etc["bohai"], bohai, "-verify_ip", "127.0.1.2")
    assert "Verification: OK" in ok.stderr and "Peer certificate: CN = hub-bohai" in ok.stderr, ok.stderr
    wrong = _s_client(etc["national"], national, "-verify_hostname", "hub-elsewhere.example")
    assert wrong.returncode != 0 and "hostname mismatch" in wrong.stderr, wrong.stderr
    assert "Verification: OK" not in wrong.stderr


def test_dialling_an_address_the_certificate_does_not_name_is_refused(
        enrolled: tuple[Fed, dict[str, Path], Path]) -> None:
    fed, etc, _ = enrolled
    bohai = tomllib.loads((etc["bohai"] / "hub.toml").read_text())["hub"]["listen"]
    host, _, port = bohai.rpartition(":")
    relay = Forwarder(WRONG_HOST, (host, int(port)))
    try:
        # An operator whose config dials hub-bohai at the wrong address.
        wrong = etc["bohai"] / "wrong.toml"
        data = tomllib.loads((etc["bohai"] / "hub.toml").read_text())
        data["hub"]["listen"] = relay.address
        wrong.write_text(tomli_w.dumps(data))
        r = yipanqi("status", "-c", wrong)
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert f"certificate does not name {WRONG_HOST}" in r.stderr, r.stderr

        # A node whose home hub is listed at the wrong address: refused, said in status and
        # in its log, and it syncs through its fallback (the national hub) meanwhile.
        config = fed.fed.configs["province-11"]
        before = config.read_text()
        data = tomllib.loads(before)
        data["hubs"][0]["address"] = relay.address
        fed.stop("province-11")
        config.write_text(tomli_w.dumps(data))
        try:
            fed.start("province-11")
            link = eventually(lambda: (h := fed.status("province-11")["hub"])["connected"] and h, 40)
            assert link["hub"] == "national" and link["fallback"], link
            status_error = eventually(lambda: fed.status("province-11")["hub"]["last_error"] or "", 10)
            assert f"hub-bohai: {relay.address}: the server's certificate does not name {WRONG_HOST}" in status_error
            log = fed.fed.log_path("province-11").read_text()
            assert f"refused hub-bohai: {relay.address}: the server's certificate does not name {WRONG_HOST}" in log
        finally:
            fed.stop("province-11")
            config.write_text(before)
            fed.start("province-11")
    finally:
        relay.close()
    # Back at its real address, it returns to its home hub.
    eventually(lambda: (h := fed.status("province-11")["hub"])["hub"] == "bohai" and not h["fallback"], 40)
    assert json.loads(json.dumps(fed.status("hub-bohai")))["role"] == "hub"
