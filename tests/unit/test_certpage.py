"""The printable page: PNG and PDF in Chinese, and a QR code that holds the whole signed document.

The QR code is read back from the PNG with zxing-cpp (a decoder independent of segno,
which drew it) and the decoded text verifies like the file."""

from __future__ import annotations

import datetime as dt
import io
import random
import uuid

import pytest

from certs import certdoc as signing
from cli import certpage
from core import certdoc
from core.certdoc import CertificateRefused
from core.person import validate_person
from core.samples import sample_person
from tests.support.pki import PKI, build_pki

zxingcpp = pytest.importorskip("zxingcpp")
Image = pytest.importorskip("PIL.Image")
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> tuple[PKI, bytes]:
    pki = build_pki(tmp_path_factory.mktemp("pki"))
    person = validate_person(sample_person(random.Random(5), household="44", residence="11", today=TODAY),
                             today=TODAY)
    fields = certdoc.certificate_fields(cert_no=str(uuid.uuid4()), person_id=str(uuid.uuid4()), person=person,
                                        issuer="44", issued_on=TODAY, expires_on=TODAY.replace(year=TODAY.year + 3),
                                        signed_at=dt.datetime.now(dt.timezone.utc))
    return pki, signing.issue(pki.signer("province-44"), fields)


def test_png_page_carries_a_qr_code_that_verifies(document: tuple[PKI, bytes]) -> None:
    pki, doc = document
    png = certpage.render(doc, "png")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width >= 960
    (found,) = zxingcpp.read_barcodes(image)
    assert found.format == zxingcpp.BarcodeFormat.QRCode
    text = found.text
    assert text.encode("utf-8") == doc  # the whole document, byte for byte
    ok = signing.verify(text, pki.ca.cert_pem)
    assert ok.document == certdoc.decode(doc)


def test_pdf_page_embeds_the_cjk_font_and_the_qr_image(document: tuple[PKI, bytes]) -> None:
    _, doc = document
    pdf = certpage.render(doc, "pdf")
    assert pdf.startswith(b"%PDF-")
    assert b"/FontFile2" in pdf and b"/Subtype /Image" in pdf
    lines = dict(certpage.lines(certdoc.decode(doc)))
    assert lines["发证地（户籍地）"] == "广东（44）" and "至" in lines["有效期"]


def test_a_malformed_document_is_not_rendered(document: tuple[PKI, bytes]) -> None:
    with pytest.raises(CertificateRefused) as err:
        certpage.render(b'{"format": "nope"}', "png")
    assert err.value.why == "malformed"


def test_a_missing_font_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("YIPANQI_CJK_FONT", str(tmp_path / "none.ttf"))
    with pytest.raises(certpage.NoFont, match="YIPANQI_CJK_FONT: font file not found"):
        certpage.find_font()
