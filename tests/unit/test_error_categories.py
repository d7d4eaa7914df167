"""Error categories are attributes of the error classes (core.errors), and the quarantine reasons
built from them read exactly as before: "<category>: <message>"."""

from __future__ import annotations

import pytest

from core.errors import (BadSignature, Equivocation, Malformed, NotFound, SyncError, Unauthorised, UnknownAuthor,
                         ValidationError)
from runtime import intake

# The strings quarantine reasons and the yipanqi_quarantined_total{reason=...} label have always used.
LEGACY = {BadSignature: "bad signature", UnknownAuthor: "unknown author", Unauthorised: "unauthorised writer",
          Malformed: "malformed", Equivocation: "equivocation"}


@pytest.mark.parametrize("cls", list(LEGACY), ids=lambda c: c.__name__)
def test_each_refusal_class_names_its_category(cls: type[SyncError]) -> None:
    err = cls("seq 3: something is off")
    assert err.category == LEGACY[cls]
    assert intake.reason(err) == f"{LEGACY[cls]}: seq 3: something is off"


def test_subclasses_inherit_their_category() -> None:
    assert intake.BatchRefused("too many").category == "malformed"
    assert intake.CATEGORIES == frozenset(LEGACY.values())


def test_errors_no_peer_causes_share_a_generic_category() -> None:
    assert NotFound("x").category == ValidationError("f", "bad").category == SyncError("x").category == "error"
    assert SyncError.category not in intake.CATEGORIES


def test_an_unreadable_batch_is_filed_as_malformed() -> None:
    r = intake.unreadable(b"\xff" * 10, "batch of 3 changes refused whole: not JSON", "hub-pearl")
    assert r.category == "malformed"
    assert r.reason == "malformed: batch of 3 changes refused whole: not JSON"
    assert r.charged == "hub-pearl"


class _NeverVerifies:
    def verify(self, body: bytes, seal: object, proven: dict | None = None) -> str:
        raise BadSignature("no seal verifies here")


def test_intake_files_an_undecodable_change_under_malformed() -> None:
    env = intake.unreadable(b"{not json", "x", "hub-pearl").envelope
    accepted, refused = intake.check([env], _NeverVerifies(), peer="hub-pearl", peer_may_forward=True)
    assert accepted == []
    [r] = refused
    assert r.category == "malformed" and r.reason.startswith("malformed: body: "), r.reason
    assert r.charged == "hub-pearl"  # no signer could be found: the peer it came via
