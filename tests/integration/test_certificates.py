"""The electronic 婚育证明 across real processes (provinces 11, 44, 65; hubs national, bohai,
pearl, northwest): issued at the household province 65, verified at the residence province
44 offline (only the CA certificate) and against its node; altered, foreign, expired,
revoked-key, superseded and revoked documents each refused with their reason; every refusal
of issue and revoke names the field and writes nothing."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from certs import certdoc as signing
from certs.ca import create_ca, issue_identity, load_ca
from certs.signing import Signer
from core import canonical, certdoc
from tests.integration.conftest import ROOT, Fed, eventually, person, small_federation, yipanqi, yipanqi_ok
from yipanqi.v2 import admin_pb2 as apb

PROVINCES = ["11", "44", "65"]
NATIONAL = "hub-national"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    with small_federation(tmp_path_factory.mktemp("certfed"), PROVINCES) as f:
        yield f


def cfg(fed: Fed, identity: str) -> Path:
    return fed.fed.configs[identity]


def ca(fed: Fed) -> Path:
    return fed.root / "ca" / "ca.crt"


def verify(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "cli.main", "certificate", "verify", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120, input=stdin or "")


def refused(r: subprocess.CompletedProcess[str], why: str) -> str:
    assert r.returncode == 1, f"exit {r.returncode}: {r.stdout}{r.stderr}"
    assert f"refused ({why})" in r.stderr, r.stderr
    return r.stderr


def holder(fed: Fed, rng: random.Random) -> str:
    """A person of household 65 living in 44, created at 65 and arrived at 44."""
    created = fed.write("province-65", "create", person(rng, household="65", residence="44"))
    fed.arrives("province-44", created["person_id"], created)
    return created["person_id"]


def issue(fed: Fed, pid: str, out: Path, *extra: object) -> str:
    cert_no = yipanqi_ok("certificate", "issue", "-c", cfg(fed, "province-65"), pid, "--out", out, *extra).strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # it holds personal data
    return cert_no


def record(fed: Fed, identity: str, kind: str, record_id: str) -> dict | None:
    try:
        return json.loads(fed.admin(identity).Get(apb.RecordRef(kind=kind, record_id=record_id), timeout=10).json)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def test_issued_at_65_verified_at_44_offline_and_against_the_node(fed: Fed, rng: random.Random,
                                                                  tmp_path: Path) -> None:
    pid = holder(fed, rng)
    doc = tmp_path / "cert.json"
    cert_no = issue(fed, pid, doc, "--valid-years", "5")
    at_65 = fed.get("province-65", pid)
    assert at_65 is not None
    assert (at_65["marriage_cert_no"], at_65["marriage_cert_status"]) == (cert_no, "issued")
    payload = json.loads(doc.read_bytes())["certificate"]
    assert payload["cert_no"] == cert_no and payload["issuer"] == "65"
    assert payload["name"] == at_65["name"] and payload["id_number"] == at_65["id_number"]
    today = dt.date.today()
    assert payload["issued_on"] == today.isoformat() and payload["expires_on"] == f"{today.year + 5}{today.isoformat()[4:]}"

    # Offline, anywhere, with only the CA certificate: one line, exit 0.
    r = verify(doc, "--ca", ca(fed))
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith(f"valid: certificate {cert_no} of {at_65['name']}, issued by province 65")
    assert f"valid {payload['issued_on']} to {payload['expires_on']}" in line
    assert "\n" not in line

    # The person's certificate fields replicate like any write, and so does the certificate record.
    for where in ("province-44", NATIONAL):
        eventually(lambda: (fed.get(where, pid) or {}).get("marriage_cert_status") == "issued")
        eventually(lambda: (record(fed, where, "certificate", cert_no) or {}).get("status") == "issued")
    # Against the residence node: its CA and revocation list, and the status in its replica.
    r = verify(doc, "-c", cfg(fed, "province-44"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{line}; status at province-44: issued"
    # ... which 44 records as a certificate_check service it gave the holder (assessment counts these).
    checks = json.loads(yipanqi_ok("service", "list", "-c", cfg(fed, "province-44"), pid, "--json"))
    assert [(s["type"], s["provider_province"], s["on"]) for s in checks] == [
        ("certificate_check", "44", today.isoformat())]
    eventually(lambda: len(json.loads(yipanqi_ok("service", "list", "-c", cfg(fed, "province-65"), pid,
                                                 "--json"))) == 1)
    # The national hub checks too (and records nothing: hubs do not write).
    r = verify(doc, "-c", cfg(fed, NATIONAL))
    assert r.returncode == 0 and r.stdout.strip().endswith("status at hub-national: issued"), r.stderr

    # The printable page: PNG and PDF, with a QR code holding the whole document.
    png, pdf = tmp_path / "page.png", tmp_path / "page.pdf"
    yipanqi_ok("certificate", "render", doc, "--out", png)
    yipanqi_ok("certificate", "render", doc, "--out", pdf)
    assert pdf.read_bytes().startswith(b"%PDF-") and stat.S_IMODE(pdf.stat().st_mode) == 0o600
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    (code,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.read_bytes())))
    assert code.text.encode() == doc.read_bytes()
    r = verify("-", "--ca", ca(fed), stdin=code.text)  # the decoded QR text verifies as the file does
    assert r.returncode == 0 and r.stdout.strip() == line, r.stderr
    r = verify(code.text, "--ca", ca(fed))  # ... on stdin or as the argument, as a scanner hands it over
    assert r.returncode == 0 and r.stdout.strip() == line, r.stderr


def _expired_document(fed: Fed, pid: str, tmp: Path) -> bytes:
    """What an old certificate looks like: valid 2020-2023, signed by the key the federation CA
    certified for province 65 back then."""
    then = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    old = issue_identity(load_ca(fed.root / "ca"), "province-65", tmp / "old-65", now=then, days=3650)
    assert old.sign_key is not None and old.sign_cert is not None
    values = fed.get("province-65", pid)
    assert values is not None
    fields = certdoc.certificate_fields(cert_no="0b7d3c1e-7f0a-4a55-9a51-3d6f9d1c2e01", person_id=pid,
                                        person=values, issuer="65", issued_on=dt.date(2020, 5, 1),
                                        expires_on=dt.date(2023, 5, 1),
                                        signed_at=dt.datetime(2020, 5, 1, 2, tzinfo=dt.timezone.utc))
    return signing.issue(Signer.load(old.sign_key, old.sign_cert), fields)


def test_altered_foreign_expired_revoked_and_superseded_are_refused(fed: Fed, rng: random.Random,
                                                                    tmp_path: Path) -> None:
    pid = holder(fed, rng)
    first = tmp_path / "first.json"
    old_no = issue(fed, pid, first)
    original = json.loads(first.read_bytes())

    # Altered: one field changed after signing.
    obj = json.loads(first.read_bytes())
    obj["certificate"]["children"] = obj["certificate"].get("children", 0) + 1
    altered = tmp_path / "altered.json"
    altered.write_bytes(canonical.dumps(obj))
    assert "signature does not verify" in refused(verify(altered, "--ca", ca(fed)), "altered")
    # Not from the federation CA: checked against another CA.
    other = create_ca(tmp_path / "other-ca")
    (tmp_path / "other.crt").write_bytes(other.cert_pem)
    assert "not from the federation CA" in refused(verify(first, "--ca", tmp_path / "other.crt"), "not_federation")
    # Expired.
    old = tmp_path / "old.json"
    old.write_bytes(_expired_document(fed, pid, tmp_path))
    assert "expired on 2023-05-01" in refused(verify(old, "--ca", ca(fed)), "expired")
    # Signed by a revoked key: 65's signing key id on a revocation list.
    revoked = tmp_path / "revoked.txt"
    revoked.write_text(f"{original['signature']['key_id']}  # compromised\n")
    assert "revoked key" in refused(verify(first, "--ca", ca(fed), "--revoked", revoked), "revoked_key")

    # Superseded: issuing again. The old document is still genuine offline, but 44 knows better.
    eventually(lambda: (record(fed, "province-44", "certificate", old_no) or {}).get("status") == "issued")
    second = tmp_path / "second.json"
    new_no = issue(fed, pid, second)
    assert new_no != old_no
    assert verify(first, "--ca", ca(fed)).returncode == 0
    eventually(lambda: (record(fed, "province-44", "certificate", old_no) or {}).get("status") == "superseded")
    err = refused(verify(first, "-c", cfg(fed, "province-44")), "superseded")
    assert f"superseded by {new_no}" in err
    assert (fed.get("province-44", pid) or {})["marriage_cert_no"] == new_no
    assert verify(second, "-c", cfg(fed, "province-44")).returncode == 0

    # Revoked: the household province revokes; every replica learns it.
    out = yipanqi_ok("certificate", "revoke", "-c", cfg(fed, "province-65"), new_no, "--reason", "信息有误")
    assert out.strip() == f"{new_no} revoked"
    for where in ("province-44", NATIONAL):
        eventually(lambda: (record(fed, where, "certificate", new_no) or {}).get("status") == "revoked")
        eventually(lambda: (fed.get(where, pid) or {}).get("marriage_cert_status") == "revoked")
    err = refused(verify(second, "-c", cfg(fed, "province-44")), "revoked")
    assert "信息有误" in err and "province-44" in err
    refused(verify(second, "-c", cfg(fed, NATIONAL)), "revoked")
    assert verify(second, "--ca", ca(fed)).returncode == 0  # offline cannot know; that is what -c is for


def test_every_refusal_names_the_field_and_writes_nothing(fed: Fed, rng: random.Random, tmp_path: Path) -> None:
    pid = holder(fed, rng)
    good = tmp_path / "good.json"
    cert_no = issue(fed, pid, good)
    eventually(lambda: record(fed, "province-44", "certificate", cert_no))
    fed.quiet()
    seqs = {p: fed.status(f"province-{p}")["last_seq"] for p in PROVINCES}

    def fails(*args: object) -> str:
        r = yipanqi(*args)
        assert r.returncode == 1, f"{args}: exit {r.returncode}: {r.stdout}{r.stderr}"
        assert r.stdout == ""
        return r.stderr

    n44, n65, n11 = (cfg(fed, f"province-{p}") for p in ("44", "65", "11"))
    err = fails("certificate", "issue", "-c", n44, pid, "--out", tmp_path / "a.json")
    assert "household_province: only the household province (65) issues" in err
    assert not (tmp_path / "a.json").exists()
    err = fails("certificate", "issue", "-c", n11, pid, "--out", tmp_path / "b.json")
    assert f"person_id: no person {pid} is held at province-11" in err
    missing = "7d4c4b8e-7c0e-4e58-8f9f-2a0d51d0a9b3"
    err = fails("certificate", "issue", "-c", n65, missing, "--out", tmp_path / "c.json")
    assert f"person_id: no person {missing} is held" in err
    assert "--out:" in fails("certificate", "issue", "-c", n65, pid, "--out", good)
    r = yipanqi("certificate", "issue", "-c", n65, pid, "--valid-years", "11", "--out", tmp_path / "d.json")
    assert r.returncode == 2 and "--valid-years" in r.stderr
    err = fails("certificate", "revoke", "-c", n44, cert_no, "--reason", "x")
    assert "household_province: only the issuing household province (65) revokes" in err
    assert "cert_no: no certificate" in fails("certificate", "revoke", "-c", n65, missing,
                                              "--reason", "x")
    assert "cert_no: 'nope' is not a certificate number" in fails("certificate", "revoke", "-c", n65,
                                                                  "nope", "--reason", "x")
    assert "reason: required" in fails("certificate", "revoke", "-c", n65, cert_no, "--reason", " ")
    err = fails("certificate", "revoke", "-c", n65, cert_no, "--reason", "a\x07b")
    assert "reason: must not contain control characters" in err
    # A province that holds no record of the holder cannot tell the status: refused, not guessed.
    assert "province-11 holds no record of the holder" in refused(verify(good, "-c", n11), "unknown")
    # Hubs neither issue nor revoke.
    for call, req in (("IssueCertificate", apb.IssueCertificateRequest(person_id=pid)),
                      ("RevokeCertificate", apb.RevokeCertificateRequest(cert_no=cert_no, reason="x"))):
        with pytest.raises(grpc.RpcError) as exc:
            getattr(fed.admin(NATIONAL), call)(req, timeout=10)
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # A malformed file is refused before anything is asked of a node.
    junk = tmp_path / "junk.json"
    junk.write_text('{"format": "yipanqi-certificate/1"}')
    refused(verify(junk, "-c", n44), "malformed")
    r = verify(tmp_path / "absent.json", "--ca", ca(fed))
    assert r.returncode == 1 and "FILE: cannot read" in r.stderr

    time.sleep(0.5)
    assert {p: fed.status(f"province-{p}")["last_seq"] for p in PROVINCES} == seqs  # nothing was written
    assert record(fed, "province-65", "certificate", cert_no)["status"] == "issued"  # type: ignore[index]
