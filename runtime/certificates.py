"""The electronic 婚育证明: issue, revoke and check certificates on a node (or check on the national hub).

How this works. ``issue`` (household province only) builds the document from
the person record, signs it with this node's signing key (certs.certdoc) and
writes, in one transaction and under one signature: the new certificate
record (with the document's digest), the certificates it supersedes
(status ``superseded``) and the person's ``marriage_cert_no`` /
``marriage_cert_status``. The document is handed back only once that has
committed. ``revoke`` (household province only) sets the record's status and
the person's. Both replicate like any write: the records route to the
person's household and residence provinces and the national database.

``check`` verifies a document as the offline check does, with this process's
CA and revocation list, then judges it against this replica: the certificate
record (status, digest) or else the person record. At a node a valid
document also records a ``certificate_check`` service given by this province.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Callable

from certs import certdoc as signed
from certs.signing import Signer
from core import certdoc
from core.certdoc import CertificateRefused
from core.errors import PermissionDenied, ValidationError
from core.identity import Identity
from core.kinds import get_kind, open_conflicts
from core.record import RecordState
from runtime.records import RecordService
from runtime.services import held_person
from store.store import Store

MAX_YEARS = 10
DEFAULT_YEARS = 3


def add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


class CertificateDesk:
    def __init__(self, store: Store, verify: Callable[[bytes], signed.Verified], records: RecordService | None = None,
                 signer: Signer | None = None, today: Callable[[], dt.date] = dt.date.today,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)) -> None:
        self.store = store
        self.now = now
        # Issuing reads which certificates it supersedes before its transaction: one at a time,
        # so two concurrent issues cannot both leave an earlier one "issued".
        self._lock = threading.Lock()
        self.verify = verify  # offline verification with this process's CA and revocation list
        self.records = records  # None on hubs: they check, they do not issue
        self.signer = signer
        self.today = today

    def _writer(self) -> RecordService:
        if self.records is None or self.signer is None:
            raise PermissionDenied("hubs do not issue or revoke certificates; the household province's node does")
        return self.records

    def issue(self, person_id: str, valid_years: int, operator: str | None) -> tuple[str, bytes]:
        with self._lock:
            return self._issue(person_id, valid_years, operator)

    def _issue(self, person_id: str, valid_years: int, operator: str | None) -> tuple[str, bytes]:
        records = self._writer()
        assert self.signer is not None
        if type(valid_years) is not int or not 1 <= valid_years <= MAX_YEARS:
            raise ValidationError("valid_years", f"must be 1..{MAX_YEARS}, got {valid_years!r}")
        state = held_person(self.store, person_id)
        person, pid, own = state.values(), state.record_id, self.store.province
        household = person.get("household_province")
        assert own is not None  # _writer(): a province node
        if household != own:
            raise ValidationError("household_province", f"only the household province ({household}) issues "
                                                        f"this person's certificate; this is province {own}")
        if conflicted := open_conflicts(state):
            raise ValidationError("person_id", f"person {pid} has open conflicts ({', '.join(conflicted)}); "
                                               "settle them before issuing")
        today = self.today()
        cert_no = str(uuid.uuid4())
        fields = certdoc.certificate_fields(cert_no=cert_no, person_id=pid, person=person, issuer=own,
                                            issued_on=today, expires_on=add_years(today, valid_years),
                                            signed_at=self.now())
        document = signed.issue(self.signer, fields)
        digest = certdoc.decode(document).digest
        rows: list[tuple[str, str, str, dict[str, object]]] = [("create", "certificate", cert_no, {
            "person_id": pid, "household_province": own, "residence_province": person.get("residence_province"),
            "issued_on": today.isoformat(), "expires_on": fields["expires_on"], "status": "issued",
            "status_on": today.isoformat(), "digest": digest})]
        for row in self.store.projected("certificate", {"person_id": pid, "status": "issued"}):
            rows.append(("update", "certificate", row["cert_no"],
                         {"status": "superseded", "status_on": today.isoformat(), "superseded_by": cert_no}))
        rows.append(("update", "person", pid, {"marriage_cert_no": cert_no, "marriage_cert_status": "issued"}))
        records.write_all(rows, operator)
        return cert_no, document

    def revoke(self, cert_no: str, reason: str, operator: str | None) -> dict[str, object]:
        with self._lock:
            return self._revoke(cert_no, reason, operator)

    def _revoke(self, cert_no: str, reason: str, operator: str | None) -> dict[str, object]:
        records = self._writer()
        try:
            cert_no = str(uuid.UUID(cert_no.strip()))
        except (ValueError, AttributeError):
            raise ValidationError("cert_no", f"{cert_no!r} is not a certificate number") from None
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("reason", "required: say why the certificate is revoked")
        today = self.today()
        get_kind("certificate").validate({"reason": reason}, today=today, partial=True)
        state = self.store.get("certificate", cert_no)
        if state is None or state.deleted:
            raise ValidationError("cert_no", f"no certificate {cert_no} is held at {self.store.owner}")
        cert = state.values()
        if cert.get("household_province") != self.store.province:
            raise ValidationError("household_province", f"only the issuing household province "
                                                        f"({cert.get('household_province')}) revokes this certificate; "
                                                        f"this is province {self.store.province}")
        if cert.get("status") == "revoked":
            raise ValidationError("cert_no", f"certificate {cert_no} is already revoked")
        rows: list[tuple[str, str, str, dict[str, object]]] = [("update", "certificate", cert_no, {
            "status": "revoked", "status_on": today.isoformat(), "reason": reason})]
        person = self.store.get("person", str(cert.get("person_id")))
        if person is not None and not person.deleted and person.values().get("marriage_cert_no") == cert_no:
            rows.append(("update", "person", person.record_id, {"marriage_cert_status": "revoked"}))
        records.write_all(rows, operator)
        return {"cert_no": cert_no, "status": "revoked", "status_on": today.isoformat()}

    def check(self, document: bytes, operator: str | None) -> dict[str, object]:
        """This replica's view of a document: {"status": issued|superseded|revoked, ...}.

        Raises CertificateRefused if the document itself does not verify here, or if this
        replica cannot judge it (holds no record of the holder, or recorded another document).
        """
        if not self.store.hold_records:
            raise PermissionDenied("regional hubs hold no records; check at a node or the national hub")
        ok = self.verify(document)
        c = ok.document.certificate
        cert_no, pid = str(c["cert_no"]), str(c["person_id"])
        person = self.store.get("person", pid)
        if person is None or person.deleted:
            raise CertificateRefused("unknown", f"{self.store.owner} holds no record of the holder (person {pid}), "
                                                "so it cannot tell the certificate's current status")
        p = person.values()
        if p.get("id_number") != c["id_number"]:
            raise CertificateRefused("altered", f"the document's holder does not match person {pid} held here")
        out: dict[str, object] = {"cert_no": cert_no, "checked_at": self.store.owner}
        record = self.store.get("certificate", cert_no)
        if record is not None and not record.deleted:
            _issuer_wrote(record, str(c["issuer"]))
            r = record.values()
            if r.get("digest") not in (None, ok.document.digest):
                raise CertificateRefused("altered", f"certificate {cert_no} was recorded with other content")
            out.update(status=r.get("status"), status_on=r.get("status_on"))
            if r.get("status") == "revoked":
                out["reason"] = r.get("reason")
            if r.get("status") == "superseded":
                out["superseded_by"] = r.get("superseded_by")
        elif p.get("marriage_cert_no") == cert_no:
            out["status"] = "revoked" if p.get("marriage_cert_status") == "revoked" else "issued"
        elif p.get("marriage_cert_no"):
            out.update(status="superseded", superseded_by=p.get("marriage_cert_no"))
        else:
            raise CertificateRefused("unknown", f"{self.store.owner} has no record of certificate {cert_no}")
        if out["status"] == "issued" and self.records is not None:
            own = self.store.province
            if own in (p.get("household_province"), p.get("residence_province")):
                service = self.records.write("create", "service", "", {
                    "person_id": pid, "type": "certificate_check", "on": self.today().isoformat(),
                    "provider_province": own, "household_province": p.get("household_province"),
                    "residence_province": p.get("residence_province")}, operator)
                out["service_id"] = service.record_id
        return out


def _issuer_wrote(record: RecordState, issuer: str) -> None:
    """Only the issuing province's word on a certificate counts. Any involved province may write
    the record (the residence province rewrites its routing fields when the holder moves), so a
    compromised one could sign a false status; every version names its writer, so check it."""
    for name in ("status", "digest", "superseded_by"):
        version = record.winner(name)
        if version is not None and version.at.node != str(Identity.for_province(issuer)):
            raise CertificateRefused("unknown", f"certificate {record.record_id}: its {name} here was written by "
                                                f"{version.at.node}, not the issuing province {issuer}; not trusted")


def document_verifier(ca_pem: bytes, revoked: Callable[[], frozenset[str]]) -> Callable[[bytes], signed.Verified]:
    """Offline verification with this process's CA and (re-read on every call) revocation list."""
    return lambda document: signed.verify(document, ca_pem, revoked=revoked())
