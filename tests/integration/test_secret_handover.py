"""Handing the federation secret to a process already enrolled (issue 12), through the real CLI.

A node whose ``federation.secret`` is lost cannot start; `enrol secret-request`, `federation
secret-seal` at the CA and `enrol secret-install` give it back, 0600, without re-enrolling and
without the secret ever being printed or travelling in clear. The CA refuses a regional hub, a
request whose key was swapped, a certificate of another CA and a revoked one, each naming the
field and the reason; the install refuses a reply for another process and never replaces a
different secret.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from certs import secret as fed_secret
from cli.federation import init_federation
from runtime.config import ConfigError, load_node
from tests.integration.conftest import yipanqi


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def no_secret_in(secret: bytes, *outputs: str) -> None:
    for text in outputs:
        for form in (secret.hex(), base64.b64encode(secret).decode()):
            assert form not in text


def run(*args: object) -> tuple[int, str]:
    r = yipanqi(*args)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture
def fed(tmp_path: Path) -> Path:
    init_federation(tmp_path / "fed", ["44"], 17000)
    return tmp_path / "fed"


def test_a_node_that_lost_its_secret_gets_it_back_sealed_to_its_own_key(fed: Path) -> None:
    secret = (fed / "ca" / "federation.secret").read_bytes()
    node = fed / "nodes" / "44"
    (node / "federation.secret").unlink()
    with pytest.raises(ConfigError, match="federation_secret"):
        load_node(node / "node.toml")  # it cannot start without it

    code, out = run("enrol", "secret-request", "-c", node / "node.toml")
    assert code == 0, out
    request = json.loads((node / "secret-request.json").read_text())
    assert sorted(request) == ["identity", "secret_pub", "signature", "tls_crt", "yipanqi"]
    assert request["identity"] == "province-44" and _mode(node / "secret.key") == 0o600

    code, sealed_out = run("federation", "secret-seal", fed, node / "secret-request.json")
    assert code == 0, sealed_out
    reply = node / "province-44.secret.json"
    assert json.loads(reply.read_text())["identity"] == "province-44"

    code, installed = run("enrol", "secret-install", "-c", node / "node.toml", reply)
    assert code == 0, installed
    assert (node / "federation.secret").read_bytes() == secret and _mode(node / "federation.secret") == 0o600
    assert load_node(node / "node.toml").federation_secret == (node / "federation.secret").resolve()
    code, again = run("enrol", "secret-install", "-c", node / "node.toml", reply)
    assert code == 0 and "already holds the federation secret" in again
    no_secret_in(secret, out, sealed_out, installed, again, reply.read_text(),
                 (node / "secret-request.json").read_text())

    # A different secret already there is never replaced.
    os.remove(node / "federation.secret")
    fed_secret.write(node / "federation.secret", os.urandom(32))
    code, out = run("enrol", "secret-install", "-c", node / "node.toml", reply)
    assert code == 1 and "federation_secret:" in out and "holds another secret" in out


def test_the_national_hub_gets_it_and_a_regional_hub_never(fed: Path) -> None:
    national, pearl = fed / "hubs" / "national", fed / "hubs" / "pearl"
    (national / "federation.secret").unlink()
    assert run("enrol", "secret-request", "-c", national / "hub.toml")[0] == 0
    assert run("federation", "secret-seal", fed, national / "secret-request.json")[0] == 0
    code, out = run("enrol", "secret-install", "-c", national / "hub.toml", national / "hub-national.secret.json")
    assert code == 0, out
    assert (national / "federation.secret").read_bytes() == (fed / "ca" / "federation.secret").read_bytes()

    code, out = run("enrol", "secret-request", "-c", pearl / "hub.toml")
    assert code == 1 and "[hub].name: hub-pearl is a regional hub: it never holds the federation secret" in out
    assert not (pearl / "secret-request.json").exists()
    # A request made by hand with pearl's own certified key is refused at the CA all the same.
    forged = fed_secret.make_request("province-44", pearl / "tls.key", pearl / "tls.crt", pearl / "x.key")
    pub = forged["secret_pub"]
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = serialization.load_pem_private_key((pearl / "tls.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    message = fed_secret._request_message("hub-pearl", pub)
    forged.update(identity="hub-pearl", signature=base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode())
    (pearl / "forged.json").write_text(json.dumps(forged))
    code, out = run("federation", "secret-seal", fed, pearl / "forged.json")
    assert code == 1 and "identity: hub-pearl never holds the federation secret" in out
    assert not (pearl / "hub-pearl.secret.json").exists()


def test_the_ca_refuses_a_swapped_key_a_foreign_certificate_and_a_revoked_one(fed: Path, tmp_path: Path) -> None:
    node = fed / "nodes" / "44"
    assert run("enrol", "secret-request", "-c", node / "node.toml")[0] == 0
    request = json.loads((node / "secret-request.json").read_text())

    # Someone who copied the request swaps in a key of their own: the signature no longer holds.
    swapped = {**request, "secret_pub": fed_secret.new_seal_key(tmp_path / "thief.key")}
    (tmp_path / "swapped.json").write_text(json.dumps(swapped))
    code, out = run("federation", "secret-seal", fed, tmp_path / "swapped.json", "-o", tmp_path / "out.json")
    assert code == 1 and "signature: does not verify with province-44's certificate" in out
    assert not (tmp_path / "out.json").exists()

    other = tmp_path / "other"
    init_federation(other, ["44"], 17200)
    assert run("enrol", "secret-request", "-c", other / "nodes" / "44" / "node.toml")[0] == 0
    code, out = run("federation", "secret-seal", fed, other / "nodes" / "44" / "secret-request.json")
    assert code == 1 and "tls_crt: not issued by this federation's CA" in out

    # A reply for this node does not install at another process (nor open with its key).
    assert run("federation", "secret-seal", fed, node / "secret-request.json")[0] == 0
    national = fed / "hubs" / "national"
    code, out = run("enrol", "secret-install", "-c", national / "hub.toml", node / "province-44.secret.json")
    assert code == 1 and "identity: sealed for 'province-44', not hub-national" in out

    assert run("federation", "revoke", fed, node / "tls.crt")[0] == 0
    code, out = run("federation", "secret-seal", fed, node / "secret-request.json", "-o", tmp_path / "late.json")
    assert code == 1 and "tls_crt: revoked" in out and not (tmp_path / "late.json").exists()
