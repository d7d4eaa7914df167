"""Enrolment: keys made where they are used; the CA signs checked requests only, with the hosts
it records; a returned certificate is installed only if it is the CA's and for our key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs.ca import create_ca
from certs.enrolment import check_certificate, new_keys, sign_request, split_address
from cli.main import main
from core.errors import ValidationError


@pytest.fixture
def ca(tmp_path: Path):  # type: ignore[no-untyped-def]
    return create_ca(tmp_path / "ca")


def _sans(pem: bytes) -> list[str]:
    ext = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(n.value) for n in ext.value]


def test_keys_stay_and_requests_carry_no_secret(tmp_path: Path) -> None:
    csrs = new_keys("province-44", tmp_path / "44")
    assert set(csrs) == {"tls", "sign"}
    for kind, pem in csrs.items():
        assert b"PRIVATE" not in pem
        assert (tmp_path / "44" / f"{kind}.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        new_keys("province-44", tmp_path / "44")
    assert set(new_keys("operator-44-admin", tmp_path / "op")) == {"tls"}


def test_the_ca_names_the_hosts_it_decides(ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csrs = new_keys("hub-bohai", tmp_path / "bohai")
    tls = sign_request(ca, "hub-bohai", "tls", csrs["tls"], hosts=["bohai.gov.example"])
    assert _sans(tls) == ["bohai.gov.example", "hub-bohai", "yipanqi:hub-bohai"]
    tls6 = sign_request(ca, "hub-bohai", "tls", csrs["tls"], hosts=["::1"])
    assert _sans(tls6)[0] == "::1"
    check_certificate(ca.cert_pem, tls, tmp_path / "bohai" / "tls.key", "hub-bohai", "tls_crt")
    sign = sign_request(ca, "hub-bohai", "sign", csrs["sign"])
    check_certificate(ca.cert_pem, sign, tmp_path / "bohai" / "sign.key", "hub-bohai", "sign_crt")


def test_requests_are_checked(ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csrs = new_keys("province-44", tmp_path / "44")
    with pytest.raises(ValidationError, match="not province-45"):
        sign_request(ca, "province-45", "tls", csrs["tls"])
    with pytest.raises(ValidationError, match="must be Ed25519"):
        sign_request(ca, "province-44", "sign", csrs["tls"])
    with pytest.raises(ValidationError, match="must be ECDSA P-256"):
        sign_request(ca, "province-44", "tls", csrs["sign"])
    with pytest.raises(ValidationError, match="not a PEM"):
        sign_request(ca, "province-44", "tls", "hello")
    with pytest.raises(ValidationError, match="neither an IP address nor a DNS name"):
        sign_request(ca, "province-44", "tls", csrs["tls"], hosts=["bad host"])
    # A request whose self-signature does not verify: the sender does not hold the key.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "province-44")])
    der = bytearray(x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
                    .public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValidationError, match="signature does not verify"):
        sign_request(ca, "province-44", "tls", forged)


def test_a_certificate_for_another_key_or_ca_is_refused(ca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mine = new_keys("province-44", tmp_path / "mine")
    other = new_keys("province-44", tmp_path / "other")
    theirs = sign_request(ca, "province-44", "tls", other["tls"])
    with pytest.raises(ValidationError, match="not for the key"):
        check_certificate(ca.cert_pem, theirs, tmp_path / "mine" / "tls.key", "province-44", "tls_crt")
    rogue = create_ca(tmp_path / "rogue")
    forged = sign_request(rogue, "province-44", "tls", mine["tls"])
    with pytest.raises(ValidationError, match="not issued by the federation CA"):
        check_certificate(ca.cert_pem, forged, tmp_path / "mine" / "tls.key", "province-44", "tls_crt")


@pytest.mark.parametrize("address,ok", [("127.0.1.2:7001", True), ("[::1]:7001", True), ("node.example:1", True),
                                        ("::1:7001", False), ("x:0", False), ("a b:7", False), ("7001", False)])
def test_addresses(address: str, ok: bool) -> None:
    if ok:
        split_address(address)
    else:
        with pytest.raises(ValidationError):
            split_address(address)


def test_sign_refuses_a_node_whose_hub_has_not_enrolled_and_writes_nothing(tmp_path: Path) -> None:
    cli = CliRunner()
    assert cli.invoke(main, ["federation", "ca", str(tmp_path / "fed")]).exit_code == 0
    assert cli.invoke(main, ["enrol", "node", "44", "--address", "127.0.1.44:7144", str(tmp_path / "44")]).exit_code == 0
    r = cli.invoke(main, ["federation", "sign", str(tmp_path / "fed"), str(tmp_path / "44" / "request.json")])
    assert r.exit_code != 0 and "dials hub-pearl, which has not enrolled" in r.output
    assert not (tmp_path / "44" / "province-44.certificates.json").exists()
    assert json.loads((tmp_path / "fed" / "federation.json").read_text()) == {"hubs": {}, "nodes": {}}


def test_enrol_refuses_certificates_for_another_identity(tmp_path: Path) -> None:
    cli = CliRunner()
    fed, d = tmp_path / "fed", tmp_path / "national"
    assert cli.invoke(main, ["federation", "ca", str(fed)]).exit_code == 0
    assert cli.invoke(main, ["enrol", "hub", "national", "--address", "127.0.1.1:7000", str(d)]).exit_code == 0
    assert cli.invoke(main, ["federation", "sign", str(fed), str(d / "request.json")]).exit_code == 0
    certs = d / "hub-national.certificates.json"
    r = cli.invoke(main, ["enrol", "hub", "bohai", str(d), "--certificates", str(certs)])
    assert r.exit_code != 0 and "are for 'hub-national', not hub-bohai" in r.output
    r = cli.invoke(main, ["enrol", "hub", "national", str(d), "--certificates", str(certs)])
    assert r.exit_code == 0, r.output
    assert 'listen = "127.0.1.1:7000"' in (d / "hub.toml").read_text()


def test_init_and_issue_take_addresses(tmp_path: Path) -> None:
    import tomllib

    cli = CliRunner()
    fed = tmp_path / "fed"
    r = cli.invoke(main, ["federation", "init", str(fed), "--provinces", "11", "--address", "bohai=127.0.1.2:7001",
                          "--address", "11=[::1]:7111"])
    assert r.exit_code == 0, r.output
    bohai = tomllib.loads((fed / "hubs" / "bohai" / "hub.toml").read_text())
    node = tomllib.loads((fed / "nodes" / "11" / "node.toml").read_text())
    assert bohai["hub"]["listen"] == "127.0.1.2:7001" and node["node"]["listen"] == "[::1]:7111"
    assert node["hubs"][0] == {"name": "bohai", "address": "127.0.1.2:7001"}
    assert _sans((fed / "hubs" / "bohai" / "tls.crt").read_bytes()) == ["127.0.1.2", "hub-bohai", "yipanqi:hub-bohai"]
    assert _sans((fed / "nodes" / "11" / "tls.crt").read_bytes())[0] == "::1"
    # Without --address: the one-machine default.
    assert _sans((fed / "hubs" / "national" / "tls.crt").read_bytes())[:2] == ["localhost", "127.0.0.1"]

    r = cli.invoke(main, ["federation", "issue", str(fed), "hub-bohai", "--address", "bohai=bohai.gov.example:7001"])
    assert r.exit_code == 0, r.output
    assert _sans((fed / "hubs" / "bohai" / "tls.crt").read_bytes())[0] == "bohai.gov.example"
    node = tomllib.loads((fed / "nodes" / "11" / "node.toml").read_text())
    assert node["hubs"][0]["address"] == "bohai.gov.example:7001"
    assert tomllib.loads((fed / "hubs" / "bohai" / "hub.toml").read_text())["hub"]["listen"] == "bohai.gov.example:7001"

    r = cli.invoke(main, ["federation", "issue", str(fed), "hub-bohai", "--address", "11=127.0.1.3:1"])
    assert r.exit_code != 0 and "give the address of hub-bohai only" in r.output
    r = cli.invoke(main, ["federation", "init", str(tmp_path / "f2"), "--address", "bohai=::1:7"])
    assert r.exit_code != 0 and "write an IPv6 address in brackets" in r.output
