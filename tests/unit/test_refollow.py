"""Which received records call for the followers' repair (node.refollow, store ``rerouted``):
a person whose shown household or residence changed here (not one new here), and a follower
new here or routed elsewhere; nothing else."""

from __future__ import annotations

from core.hlc import Timestamp
from core.record import RecordState, empty
from node.refollow import people
from store.store import _rerouted

PID = "0b9c4f4e-5b7e-4a39-9a57-3f6f3b1c0001"
SID = "0b9c4f4e-5b7e-4a39-9a57-3f6f3b1c0002"


def at(ms: int, node: str = "province-44") -> Timestamp:
    return Timestamp(ms, 0, node)


def person(**values: object) -> RecordState:
    return empty("person", PID).write({"household_province": "65", "residence_province": "44", **values},
                                      node="province-44", at=at(1))


def test_a_move_reroutes_a_person_and_another_field_does_not() -> None:
    before = person()
    moved = before.write({"residence_province": "11"}, node="province-44", at=at(2))
    renamed = before.write({"residence_city": "深圳市"}, node="province-44", at=at(2))
    same = before.write({"residence_province": "44"}, node="province-65", at=at(2, "province-65"))
    assert _rerouted(before, moved)
    assert not _rerouted(before, renamed)
    assert not _rerouted(before, same)  # written again with the value it had: still routed as before
    assert _rerouted(None, before)  # new here


def test_people_are_the_moved_persons_and_the_persons_of_rerouted_followers() -> None:
    before = person()
    moved = before.write({"residence_province": "11"}, node="province-44", at=at(2))
    service = empty("service", SID).write({"person_id": "other", "household_province": "65",
                                          "residence_province": "44"}, node="province-65", at=at(3, "province-65"))
    assert people([(before, moved)]) == [PID]
    assert people([(None, before)]) == []  # new here: looked at only through followers rerouted with it
    assert people([(None, service), (before, moved), (None, service)]) == ["other", PID]


def test_a_refused_repair_is_logged_by_its_log_text_never_its_value() -> None:
    # log_text is a property: calling it (as this once did) raised TypeError inside the error path.
    from core.errors import ValidationError
    from node.refollow import _reason

    assert _reason(ValidationError("name", "got '张三'", rule="must be 1..50 characters")) == \
        "name: must be 1..50 characters"
    assert _reason(RuntimeError("a database error may quote values")) == "RuntimeError"
