"""Status reports are signed by the province they describe (runtime.reports): what a receiver keeps.

Real keys and certificates from a throwaway federation CA; the only stand-in is ``Trust``,
the three methods of runtime.replica.Replica that runtime.reports.Desk uses (a real Keyring inside).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from certs.ca import CA, create_ca, issue_identity
from certs.keyring import Keyring
from certs.signing import Signer
from core.errors import UnknownAuthor
from core.routing import Topology
from runtime import reports
from runtime.reports import Desk, sign
from hub.status import federation_table
from store.store import Store

NOW = 1_800_000_000_000


def _utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return create_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def signers(ca: CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Signer]:
    root = tmp_path_factory.mktemp("issued")
    out = {}
    for identity in ("province-11", "province-44", "province-45", "hub-pearl"):
        paths = issue_identity(ca, identity, root / identity)
        assert paths.sign_key is not None and paths.sign_cert is not None
        out[identity] = Signer.load(paths.sign_key, paths.sign_cert)
    return out


class Trust:
    """runtime.replica.Replica's keyring, learn and sync_revocations, over a real Keyring."""

    def __init__(self, ca: CA) -> None:
        self.keyring = Keyring(ca.cert_pem)
        self.revoked: list[str] = []

    def learn(self, certificates: list[bytes]) -> None:
        for der in certificates:
            try:
                self.keyring.add_certificate(der, now=_utc())
            except UnknownAuthor:
                pass

    def sync_revocations(self) -> None:
        for token in self.revoked:
            self.keyring.revoke(token)


def _desk(ca: CA, now: int = NOW) -> Desk:
    return Desk(Trust(ca), now_ms=lambda: now)


def _report(signer: Signer, at: int = NOW, **figures: object) -> str:
    return json.dumps(sign(signer, {"at_ms": at, "records": 7, "quarantined": 2, **figures}))


def _envelope(text: str) -> dict:
    return json.loads(text)["signed"]


def _hub(*envelopes: dict) -> str:
    return json.dumps({"at_ms": NOW, "log_lsn": 3, "quarantined": 1, "nodes": list(envelopes)})


def test_a_signed_report_is_kept_and_relayed_unchanged(ca: CA, signers: dict[str, Signer]) -> None:
    text = _report(signers["province-44"], backlog=0, oldest_age_s=None)
    regional = _desk(ca)
    assert regional.take("province-44", text) == []
    relayed = regional.envelopes()
    assert relayed == [_envelope(text)]  # verbatim: the very bytes the node signed
    national = _desk(ca)
    assert national.take("hub-pearl", _hub(*relayed)) == []
    row = national.rows()["province-44"]
    assert (row["records"], row["quarantined"], row["at_ms"], row["via"]) == (7, 2, NOW, "hub-pearl")
    assert "oldest_age_s" not in row  # null figures are left out, not signed as null
    assert national.hub_claims()["hub-pearl"]["log_lsn"] == 3
    assert national.refused == {}


def test_a_report_not_signed_by_its_province_is_refused_and_charged_to_the_sender(
        ca: CA, signers: dict[str, Signer]) -> None:
    s44, s11 = signers["province-44"], signers["province-11"]
    honest = _envelope(_report(s44))
    altered = {**honest, "body": honest["body"].replace('"records":7', '"records":999')}
    zeroed = {**honest, "body": honest["body"].replace('"quarantined":2', '"quarantined":0')}
    other = {**honest, "body": json.dumps({"identity": "province-11", "at_ms": NOW, "records": 999})}
    # 44's key signing a body that says it is about 11: a valid signature, the wrong province.
    body11 = reports.canonical({"identity": "province-11", "at_ms": NOW, "records": 999})
    mislabelled = {**honest, "body": body11,
                   "signature": base64.b64encode(s44.sign_report(body11.encode())).decode()}
    body_hub = reports.canonical({"identity": "hub-pearl", "at_ms": NOW})
    by_hub = {"body": body_hub, "key_id": signers["hub-pearl"].key_id,
              "certificate": base64.b64encode(signers["hub-pearl"].cert_der).decode(),
              "signature": base64.b64encode(signers["hub-pearl"].sign_report(body_hub.encode())).decode()}
    unknown = {"body": body11, "key_id": "ed25519:0000000000000000", "signature": base64.b64encode(bytes(64)).decode()}
    wrong_cert = {**honest, "certificate": base64.b64encode(s11.cert_der).decode()}
    unsigned = json.loads(body11)
    desk = _desk(ca)
    problems = desk.take("hub-pearl", _hub(altered, zeroed, other, mislabelled, by_hub, unknown, wrong_cert, unsigned))
    assert len(problems) == 8, problems
    assert "signature by" in problems[0] and "does not verify" in problems[0]
    assert "signed.body.identity: is not province-44" in problems[3]
    assert "not a province" in problems[4]
    assert "no trusted signing certificate" in problems[5]
    assert "not the certificate of signed.key_id" in problems[6]
    assert "signed.body: must be the report text" in problems[7]
    assert desk.rows() == {} and desk.refused == {"hub-pearl": 8}
    # A node's report must be signed at all.
    assert desk.take("province-44", json.dumps({"at_ms": NOW, "records": 1})) == [
        "signed: missing (a node's report must be signed by the node)"]
    assert desk.refused == {"hub-pearl": 8, "province-44": 1}


def test_reports_by_a_revoked_or_expired_key_are_refused(ca: CA, signers: dict[str, Signer]) -> None:
    s44 = signers["province-44"]
    desk = _desk(ca)
    desk.trust.revoked.append(s44.key_id)  # type: ignore[attr-defined]
    (problem,) = desk.take("province-44", _report(s44))
    assert "signed.signature" in problem and desk.rows() == {}
    later = Desk(Trust(ca), now_ms=lambda: int((s44.not_after.timestamp() + 60) * 1000))
    (problem,) = later.take("province-44", _report(s44, at=int(s44.not_after.timestamp() * 1000)))
    assert "has expired" in problem and later.rows() == {}


def test_no_replay_and_no_report_time_from_the_future(ca: CA, signers: dict[str, Signer]) -> None:
    s45 = signers["province-45"]
    desk = _desk(ca)
    first, second = _report(s45, at=NOW - 10_000, records=1), _report(s45, at=NOW - 5_000, records=2)
    assert desk.take("province-45", first) == [] and desk.take("province-45", second) == []
    assert desk.take("province-45", second) == []  # the same report again (relayed twice): kept, not counted
    (problem,) = desk.take("hub-pearl", _hub(_envelope(first)))
    assert "older than province-45's last accepted report" in problem
    (problem,) = desk.take("province-45", _report(s45, at=NOW - 5_000, records=3))
    assert "already reported at that time" in problem
    (problem,) = desk.take("province-45", _report(s45, at=NOW + reports.REPORT_SKEW_MS + 1, records=4))
    assert "in the future" in problem
    assert desk.rows()["province-45"]["records"] == 2
    assert desk.refused == {"hub-pearl": 1, "province-45": 2}
    assert desk.take("province-45", _report(s45, at=NOW + reports.REPORT_SKEW_MS, records=5)) == []
    assert desk.rows()["province-45"]["records"] == 5


def test_refusals_are_logged_without_data_and_rate_limited(ca: CA, signers: dict[str, Signer],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    desk = _desk(ca)
    secret = "张三 110101199001011234"
    bad = {**_envelope(_report(signers["province-44"])), "body": json.dumps({"identity": "province-44", "x": secret})}
    with caplog.at_level(logging.WARNING, logger="yipanqi.reports"):
        for _ in range(5):
            desk.take("hub-pearl", _hub(bad))
    lines = [r.getMessage() for r in caplog.records if r.name == "yipanqi.reports"]
    assert len(lines) == 1 and "refused a report from hub-pearl" in lines[0], lines
    assert secret not in caplog.text and "张三" not in caplog.text
    assert desk.refused == {"hub-pearl": 5}


def test_the_federation_table_attributes_delays_and_freshness_to_signed_reports(
        ca: CA, signers: dict[str, Signer], tmp_path: Path) -> None:
    now = NOW
    desk = _desk(ca, now)
    desk.take("hub-pearl", _hub(_envelope(_report(signers["province-45"], at=now - 1_000, delivery={
        "province-44": {"changes": 4, "p50_s": 1.0, "p95_s": 3.0}}))))
    desk.take("hub-bohai", _hub(_envelope(_report(signers["province-11"], at=now - 1_000, delivery={
        "province-44": {"changes": 2, "p50_s": 2.0, "p95_s": 9.0}}))))
    # 44's report is old: it stopped 30 s ago, whatever a hub relays since.
    desk.take("hub-pearl", _hub(_envelope(_report(signers["province-44"], at=now - 30_000))))
    store = Store.open(f"sqlite:///{tmp_path / 'n.db'}", owner="hub-national", index_routes=True, hold_records=True)
    try:
        rows = {r["province"]: r for r in federation_table(store, Topology.of(
            {"bohai": ("11", "13"), "pearl": ("44", "45", "46")}, {}), desk.rows(), now)}
    finally:
        store.close()
    r44, r45, r46 = rows["44"], rows["45"], rows["46"]
    assert (r44["connected"], r44["last_report_age_s"], r45["connected"]) == (False, 30.0, True)
    assert (r44["delivery_p50_s"], r44["delivery_p95_s"], r44["delivery_p95_by"]) == (1.5, 9.0, "province-11")
    assert r44["delivery_reported_by"] == ["province-11", "province-45"]
    assert (r45["receive_p50_s"], r45["receive_p95_s"], r45["delivery_p95_s"]) == (1.0, 3.0, None)
    assert "records" in r45["self_reported"] and "receive_p95_s" in r45["self_reported"]
    assert (r45["records"], r45["national_records"], r45["national_rejects"], r45["rejects"]) == (7, 0, 0, 2)
    assert (r46["connected"], r46["records"], r46["self_reported"], r46["last_report_age_s"]) == (False, None, [], None)


def test_a_refused_certificate_is_not_offered_to_the_keyring_at_every_report(ca: CA, tmp_path: Path) -> None:
    """A report every 5 s carrying a certificate the keyring refuses (and logs) would flood the log."""
    foreign = create_ca(tmp_path / "foreign")
    paths = issue_identity(foreign, "province-44", tmp_path / "f44")
    assert paths.sign_key is not None and paths.sign_cert is not None
    impostor = Signer.load(paths.sign_key, paths.sign_cert)
    offered: list[bytes] = []
    trust = Trust(ca)
    learn = trust.learn
    trust.learn = lambda ders: (offered.extend(ders), learn(ders))  # type: ignore[method-assign]
    desk = Desk(trust, now_ms=lambda: NOW)
    for at in range(5):
        (problem,) = desk.take("province-44", _report(impostor, at=NOW - 10 + at))
        assert "no trusted signing certificate" in problem
    assert offered == [impostor.cert_der] and desk.refused == {"province-44": 5} and desk.rows() == {}
