"""Certificate documents (core.certdoc, certs.certdoc): issued with a federation signing key,
verified offline with only the CA certificate, and refused with the reason for each way
a document can be wrong. Known timings: verification well under 50 ms."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import time
import uuid

import pytest

from pathlib import Path

from certs import certdoc as signing
from certs.ca import issue_identity
from certs.signing import Signer
from core import canonical, certdoc
from core.certdoc import CertificateRefused
from core.person import validate_person
from core.samples import sample_person
from tests.support.pki import PKI, build_pki

# The test's times are fixed when the module is imported; its throwaway PKI is issued as of
# then too (a minute before), however much later in a long run the first test builds it.
SIGNED = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
TODAY = SIGNED.date()
NOW = SIGNED + dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"), now=SIGNED - dt.timedelta(minutes=1))


def old_signer(pki: PKI, tmp: Path, *, since: dt.datetime, days: int) -> Signer:
    """A signing key of province 44 that the federation CA certified long ago."""
    paths = issue_identity(pki.ca, "province-44", tmp, now=since, days=days)
    assert paths.sign_key is not None and paths.sign_cert is not None
    return Signer.load(paths.sign_key, paths.sign_cert)


def _fields(issuer: str = "44", signed: dt.datetime = SIGNED, years: int = 3) -> dict[str, object]:
    person = validate_person(sample_person(random.Random(3), household=issuer, residence="11", today=TODAY),
                             today=TODAY)
    issued = signed.date()
    return certdoc.certificate_fields(cert_no=str(uuid.uuid4()), person_id=str(uuid.uuid4()), person=person,
                                      issuer=issuer, issued_on=issued, expires_on=issued.replace(year=issued.year + years),
                                      signed_at=signed)


def _refused(pki: PKI, data: bytes | str, **kw: object) -> CertificateRefused:
    with pytest.raises(CertificateRefused) as err:
        signing.verify(data, pki.ca.cert_pem, now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]
    return err.value


def _edit(doc: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    obj = json.loads(doc)
    change(obj)
    return canonical.dumps(obj)


def test_a_document_verifies_offline_with_only_the_ca(pki: PKI) -> None:
    fields = _fields()
    doc = signing.issue(pki.signer("province-44"), fields)
    ok = signing.verify(doc, pki.ca.cert_pem, now=NOW)
    assert ok.signer == "province-44"
    assert ok.document.certificate == fields
    assert ok.document.digest == certdoc.decode(doc).digest
    line = ok.line()
    assert str(fields["name"]) in line and "province 44" in line
    assert f"{fields['issued_on']} to {fields['expires_on']}" in line
    assert str(fields["id_number"]) not in line  # the line may be logged; the ID number stays out
    # The decoded QR text is the same document as text; surrounding whitespace is fine.
    assert signing.verify("\n" + doc.decode() + "\n", pki.ca.cert_pem, now=NOW).document == ok.document
    assert len(doc) < 2331  # fits one QR code at error correction level M


def test_each_way_a_document_can_be_wrong_is_refused_with_its_reason(pki: PKI, tmp_path: Path) -> None:
    signer = pki.signer("province-44")
    doc = signing.issue(signer, _fields())

    def rename(o: dict) -> None:
        o["certificate"]["name"] = "王五"

    assert _refused(pki, _edit(doc, rename)).why == "altered"

    def longer(o: dict) -> None:
        o["certificate"]["expires_on"] = "2039-01-02"

    assert _refused(pki, _edit(doc, longer)).why == "altered"
    # Signed by a key whose certificate the federation CA did not issue.
    foreign = signing.issue(pki.foreign_signer(), _fields())
    err = _refused(pki, foreign)
    assert err.why == "not_federation" and "not from the federation CA" in str(err)
    # A certificate swapped into the chain: the key id no longer names it.
    other = pki.signer("province-11")

    def swap(o: dict) -> None:
        o["chain"] = [base64.b64encode(other.cert_der).decode()]

    assert _refused(pki, _edit(doc, swap)).why == "altered"
    # The issuing key is on the revocation list (by key id, or by certificate serial).
    assert _refused(pki, doc, revoked=[signer.key_id]).why == "revoked_key"
    from cryptography import x509

    serial = format(x509.load_der_x509_certificate(signer.cert_der).serial_number, "x")
    err = _refused(pki, doc, revoked=[serial])
    assert err.why == "revoked_key" and "revoked key" in str(err)
    # Expired (signed in 2020 by the key province 44 had then), and not yet valid.
    then = old_signer(pki, tmp_path, since=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), days=3650)
    old = signing.issue(then, _fields(signed=dt.datetime(2020, 3, 1, 10, tzinfo=dt.timezone.utc), years=3))
    err = _refused(pki, old)
    assert err.why == "expired" and str(err) == "expired on 2023-03-01"
    future = signing.issue(signer, _fields(signed=SIGNED + dt.timedelta(days=5)))
    assert _refused(pki, future).why == "not_yet_valid"
    # Signed at a time its key's certificate was not valid.
    assert _refused(pki, signing.issue(signer, _fields(signed=dt.datetime(2021, 5, 1, tzinfo=dt.timezone.utc)))
                    ).why == "not_federation"
    # A province signing another province's certificate.
    forged = signing.issue(pki.signer("province-11"), _fields(issuer="44"))
    err = _refused(pki, forged)
    assert err.why == "altered" and "signed by province-11" in str(err)


def test_a_document_outlives_its_signing_certificate_but_not_a_revocation(pki: PKI, tmp_path: Path) -> None:
    # Province 44's key of 2020 was certified for 400 days; a document it signed then for ten years
    # is still good: the key was valid when it signed. Revoking that key ends it.
    then = old_signer(pki, tmp_path, since=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), days=400)
    doc = signing.issue(then, _fields(signed=dt.datetime(2020, 6, 1, 8, tzinfo=dt.timezone.utc),
                                      years=TODAY.year - 2020 + 2))
    assert signing.verify(doc, pki.ca.cert_pem, now=NOW).signer == "province-44"
    assert _refused(pki, doc, revoked=[then.key_id]).why == "revoked_key"


@pytest.mark.parametrize("change, needle", [
    (lambda o: o.update(format="x"), "format"),
    (lambda o: o.update(extra=1), "extra: unknown key"),
    (lambda o: o["certificate"].update(id_number="110101199003070000"), "certificate.id_number"),
    (lambda o: o["certificate"].update(colour="red"), "certificate.colour: unknown field"),
    (lambda o: o["certificate"].pop("cert_no"), "certificate.cert_no: required"),
    (lambda o: o["certificate"].update(expires_on="2025-01-01"), "certificate.expires_on: not after"),
    (lambda o: o["certificate"].update(children=" 2"), "normal form"),
    (lambda o: o["certificate"].update(signed_at="2020-01-01 10:00:00"), "certificate.signed_at: must be a UTC time"),
    (lambda o: o["certificate"].update(signed_at="2020-01-01T10:00:00Z"), "certificate.signed_at: not on issued_on"),
    (lambda o: o["signature"].update(value="!!"), "signature.value: not valid base64"),
    (lambda o: o.update(chain=[]), "chain"),
])
def test_malformed_documents_name_the_key(pki: PKI, change, needle: str) -> None:  # type: ignore[no-untyped-def]
    doc = signing.issue(pki.signer("province-44"), _fields())
    err = _refused(pki, _edit(doc, change))
    assert err.why == "malformed" and needle in str(err), str(err)


@pytest.mark.parametrize("data", [b"", b"not json", b"[1]", b"{" * 5000, b"x" * 9000, "\ud800".encode("utf-8", "surrogatepass")])
def test_garbage_is_malformed(pki: PKI, data: bytes) -> None:
    assert _refused(pki, data).why == "malformed"


def test_verification_takes_well_under_50_ms(pki: PKI) -> None:
    doc = signing.issue(pki.signer("province-44"), _fields())
    ca = pki.ca.cert_pem
    signing.verify(doc, ca, now=NOW)
    times = []
    # The verification's own CPU time: the suite runs in parallel workers on shared cores, where a
    # wall-clock max of 50 runs measured the scheduler (one preemption is a 50-80 ms slice).
    for _ in range(50):
        t = time.thread_time()
        signing.verify(doc, ca, now=NOW)
        times.append(time.thread_time() - t)
    times.sort()
    assert times[len(times) // 2] < 0.010 and times[-1] < 0.050, times
