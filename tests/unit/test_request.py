"""The request kind's rules: what a sender writes, who may answer or close, which writers a state
may carry (checked on receipt too), routing and the projection."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from core import request as rq
from core.errors import PermissionDenied, Unauthorised, ValidationError
from core.hlc import Timestamp
from core.kinds import get_kind
from core.record import empty

TODAY = dt.date(2026, 3, 10)
PID = str(uuid.UUID(int=7))
PERSON = {"household_province": "65", "residence_province": "44"}


def sent(**over: object) -> dict[str, object]:
    fields = {"to_province": "65", "person_id": PID, "subject": "核实婚姻状况", "due_days": 5, **over}
    return rq.new(fields, own="44", person=PERSON, today=TODAY)


def test_new_fills_sender_side_dates_and_state() -> None:
    out = sent(body="请核实")
    assert out == {"from_province": "44", "to_province": "65", "to_side": "household", "person_id": PID,
                   "subject": "核实婚姻状况", "sent_on": "2026-03-10", "due_on": "2026-03-15", "state": "open",
                   "body": "请核实"}
    assert rq.validate_request(out, today=TODAY) == out
    assert rq.new({"to_province": "44", "person_id": PID, "subject": "x"}, own="65", person=PERSON,
                  today=TODAY)["due_on"] == "2026-03-25"  # 15 days by default
    assert get_kind("request").provinces(out) == frozenset({"44", "65"})


@pytest.mark.parametrize("over, field", [
    ({"to_province": "11"}, "to_province"),   # not involved in the person
    ({"to_province": "44"}, "to_province"),   # to itself
    ({"due_days": -1}, "due_days"),
    ({"due_days": 366}, "due_days"),
    ({"due_days": "5"}, "due_days"),
    ({"person_id": "nope"}, "person_id"),
    ({"state": "answered"}, "state"),         # not the sender's to set
])
def test_new_refuses(over: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        sent(**over)
    assert err.value.field == field


def test_new_needs_the_person_here() -> None:
    with pytest.raises(ValidationError, match="no person"):
        rq.new({"to_province": "65", "person_id": PID, "subject": "x"}, own="44", person=None, today=TODAY)
    with pytest.raises(ValidationError, match="does not involve"):
        rq.new({"to_province": "65", "person_id": PID, "subject": "x"}, own="45", person=PERSON, today=TODAY)


def test_answer_only_by_receiver_close_only_by_sender() -> None:
    current = sent()
    later = dt.date(2026, 3, 12)
    assert rq.transition(current, "update", {"state": "answered", "answer": "已婚"}, "65", later) == {
        "state": "answered", "answer": "已婚", "answered_on": "2026-03-12"}
    with pytest.raises(PermissionDenied, match="only the receiving province 65"):
        rq.transition(current, "update", {"state": "answered", "answer": "x"}, "44", later)
    with pytest.raises(PermissionDenied, match="only the sending province 44"):
        rq.transition(current, "update", {"state": "closed"}, "65", later)
    assert rq.transition(current, "update", {"state": "closed"}, "44", later) == {
        "state": "closed", "closed_on": "2026-03-12"}
    answered = {**current, "state": "answered", "answer": "x", "answered_on": "2026-03-12"}
    with pytest.raises(ValidationError, match="only an open request"):
        rq.transition(answered, "update", {"state": "answered", "answer": "y"}, "65", later)
    with pytest.raises(ValidationError, match="already closed"):
        rq.transition({**current, "state": "closed"}, "update", {"state": "closed"}, "44", later)
    for edit in ({"subject": "changed"}, {"state": "open"}, {"state": "answered", "answer": "x", "due_on": "2027-01-01"}):
        with pytest.raises(ValidationError):
            rq.transition(current, "update", edit, "65", later)
    with pytest.raises(ValidationError):
        rq.transition(current, "delete", {}, "44", later)


def _state(writes: list[tuple[str, dict]]):  # type: ignore[no-untyped-def]
    st = empty("request", str(uuid.UUID(int=9)))
    for i, (node, values) in enumerate(writes):
        st = st.write(values, node=node, at=Timestamp(1000 + i, 0, node))
    return st


def test_check_writers_on_the_whole_state() -> None:
    base = sent()
    ok = _state([("province-44", base), ("province-65", {"state": "answered", "answer": "a", "answered_on": "2026-03-11"}),
                 ("province-44", {"state": "closed", "closed_on": "2026-03-12"})])
    rq.check_writers(ok)
    forged = _state([("province-44", base), ("province-44", {"state": "answered", "answer": "a",
                                                             "answered_on": "2026-03-11"})])
    with pytest.raises(Unauthorised, match="only the receiver province-65"):
        rq.check_writers(forged)
    with pytest.raises(Unauthorised):
        rq.check_writers(_state([("province-44", base), ("province-65", {"subject": "rewritten"})]))
    with pytest.raises(Unauthorised):
        rq.check_writers(_state([("province-44", base), ("province-65", {"state": "closed", "closed_on": "2026-03-12"})]))


def test_projection_counts_days_to_answer() -> None:
    row = rq.project({**sent(), "state": "answered", "answer": "a", "answered_on": "2026-03-13"})
    assert row == {"from_p": "44", "to_p": "65", "to_side": "household", "person_id": PID, "sent_on": "2026-03-10",
                   "due_on": "2026-03-15", "state": "answered", "answered_on": "2026-03-13", "closed_on": None,
                   "answer_days": 3}
    assert rq.project({"sent_on": "garbage", "answered_on": "2026-03-13"})["answer_days"] is None
    assert rq.overdue({**sent(), "due_on": "2026-03-09"}, TODAY) and not rq.overdue(sent(), TODAY)


def test_validation_cross_checks() -> None:
    with pytest.raises(ValidationError, match="before sent_on"):
        rq.validate_request({**sent(), "due_on": "2026-03-01"}, today=TODAY)
    with pytest.raises(ValidationError, match="needs answer"):
        rq.validate_request({**sent(), "state": "answered"}, today=TODAY)
    with pytest.raises(ValidationError, match="unknown field"):
        rq.validate_request({**sent(), "due_days": 3}, today=TODAY)


def test_only_the_sender_deletes() -> None:
    st = _state([("province-44", sent())])
    rq.check_writers(st.write({}, node="province-44", at=Timestamp(2000, 0, "province-44"), delete=True))
    with pytest.raises(Unauthorised, match="_deleted"):
        rq.check_writers(st.write({}, node="province-65", at=Timestamp(2000, 0, "province-65"), delete=True))
