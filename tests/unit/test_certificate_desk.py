"""CertificateDesk.check against a replica (a real SQLite store): the status it reports comes
from the issuing province's own writes; a status another province wrote is not trusted."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from pathlib import Path

import pytest

from certs import certdoc as signing
from core import certdoc
from core.certdoc import CertificateRefused
from core.person import validate_person
from core.samples import sample_person
from runtime.certificates import CertificateDesk, add_years, document_verifier
from runtime.intake import check
from store.store import Store
from tests.support.pki import PKI, build_pki

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return build_pki(tmp_path_factory.mktemp("pki"))


def _set(values):  # type: ignore[no-untyped-def]
    return lambda current: ("create" if current is None else "update", values)


def test_only_the_issuers_word_on_the_status_counts(pki: PKI, tmp_path: Path) -> None:
    issuer = Store.open(f"sqlite:///{tmp_path / 'n11.db'}", owner="province-11")
    replica = Store.open(f"sqlite:///{tmp_path / 'n44.db'}", owner="province-44")
    try:
        person = validate_person(sample_person(random.Random(1), household="11", residence="44", today=TODAY),
                                 today=TODAY)
        pid, cert_no = str(uuid.uuid4()), str(uuid.uuid4())
        fields = certdoc.certificate_fields(cert_no=cert_no, person_id=pid, person=person, issuer="11",
                                            issued_on=TODAY, expires_on=add_years(TODAY, 3),
                                            signed_at=dt.datetime.now(dt.timezone.utc))
        doc = signing.issue(pki.signer("province-11"), fields)
        seal = pki.sealer("province-11")
        issuer.write_local("person", pid, _set({**person, "marriage_cert_no": cert_no,
                                                "marriage_cert_status": "issued"}),
                           operator=None, now_ms=1, seal=seal)
        issuer.write_local("certificate", cert_no, _set({
            "person_id": pid, "household_province": "11", "residence_province": "44",
            "issued_on": TODAY.isoformat(), "expires_on": fields["expires_on"], "status": "issued",
            "digest": certdoc.decode(doc).digest}), operator=None, now_ms=2, seal=seal)
        accepted, refused = check([e.envelope for e in issuer.outbox(0)], pki.verifier(), peer="hub-pearl",
                                  peer_may_forward=True, for_province="44")
        assert refused == []
        replica.ingest(accepted, [], via="hub-pearl", now_ms=3)

        desk = CertificateDesk(replica, document_verifier(pki.ca.cert_pem, frozenset))
        assert desk.check(doc, None) == {"cert_no": cert_no, "checked_at": "province-44", "status": "issued",
                                         "status_on": None}
        # The residence province (compromised, say) writes a status of its own: not trusted.
        replica.write_local("certificate", cert_no, _set({"status": "revoked", "reason": "forged"}), operator=None,
                            now_ms=4, seal=pki.sealer("province-44"))
        with pytest.raises(CertificateRefused) as err:
            desk.check(doc, None)
        assert err.value.why == "unknown" and "written by province-44, not the issuing province 11" in str(err.value)
        # A document with the same number but other content than the issuer recorded.
        other = signing.issue(pki.signer("province-11"), {**fields, "expires_on": add_years(TODAY, 4).isoformat()})
        replica2 = Store.open(f"sqlite:///{tmp_path / 'n44b.db'}", owner="province-44")
        try:
            replica2.ingest(accepted, [], via="hub-pearl", now_ms=3)
            with pytest.raises(CertificateRefused, match="recorded with other content"):
                CertificateDesk(replica2, document_verifier(pki.ca.cert_pem, frozenset)).check(other, None)
            # Revoked keys are re-read on every check.
            revoked: set[str] = set()
            desk2 = CertificateDesk(replica2, document_verifier(pki.ca.cert_pem, lambda: frozenset(revoked)))
            assert desk2.check(doc, None)["status"] == "issued"
            revoked.add(pki.signer("province-11").key_id)
            with pytest.raises(CertificateRefused) as err:
                desk2.check(doc, None)
            assert err.value.why == "revoked_key"
        finally:
            replica2.close()
    finally:
        issuer.close()
        replica.close()
