"""The ``request`` record kind: one province asking another about a person (协查 / 通报).

How this works: the sending province writes the request (``from_province`` ->
``to_province``, about ``person_id``, due on ``due_on``); the receiving province
answers it (``answer``, ``answered_on``, state ``answered``); the sender closes it
(state ``closed``, ``closed_on``). It routes to exactly the two provinces (its routing
fields) and so to the national database, never elsewhere. ``to_side`` records
whether the receiver was the person's residence or household province when it was
sent, which is the side (流入地 / 户籍地) the answer counts for in the assessment.

Who may write which field is a property of the state itself, since every version
of a field carries its writer: ``check_writers`` refuses a state in which, say,
the sender wrote the answer. Nodes run it before writing and on every request
change they receive (a forged answer is quarantined). Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from core import fields as f
from core.errors import PermissionDenied, Unauthorised, ValidationError
from core.record import RecordState

KIND = "request"
STATES: tuple[str, ...] = ("open", "answered", "closed")
SIDES: tuple[str, ...] = ("residence", "household")
SUBJECT_MAX = 200
BODY_MAX = 4000
DEFAULT_DUE_DAYS = 15
MAX_DUE_DAYS = 365

_CHECKERS: dict[str, f.Checker] = {
    "from_province": f.province,
    "to_province": f.province,
    "to_side": f.enum(SIDES),
    "person_id": f.record_id_text,
    "subject": f.text(SUBJECT_MAX),
    "body": f.text(BODY_MAX),
    "sent_on": f.past_date,
    "due_on": f.any_date,
    "state": f.enum(STATES),
    "answer": f.text(BODY_MAX),
    "answered_on": f.past_date,
    "closed_on": f.past_date,
}
FIELDS: tuple[str, ...] = tuple(_CHECKERS)
REQUIRED = frozenset({"from_province", "to_province", "to_side", "person_id", "subject", "sent_on", "due_on",
                      "state"})
ROUTING_FIELDS = ("from_province", "to_province")

# Which side writes each field: the sender everything it sends and the closing, the
# receiver the answer. ``state`` moves open -> answered (receiver) and -> closed (sender).
_SENDER = frozenset({"from_province", "to_province", "to_side", "person_id", "subject", "body", "sent_on",
                     "due_on", "closed_on"})
_RECEIVER = frozenset({"answer", "answered_on"})


def _cross(out: Mapping[str, object]) -> None:
    frm, to = out.get("from_province"), out.get("to_province")
    if frm is not None and frm == to:
        raise ValidationError("to_province", f"a request goes to another province, not back to {frm}")
    sent = out.get("sent_on")
    for name in ("due_on", "answered_on", "closed_on"):
        value = out.get(name)
        if isinstance(sent, str) and isinstance(value, str) and value < sent:
            raise ValidationError(name, f"{value} is before sent_on {sent}")
    state = out.get("state")
    if state == "answered" and not (out.get("answer") and out.get("answered_on")):
        raise ValidationError("answer", "an answered request needs answer and answered_on")
    if state == "open" and (out.get("answer") is not None or out.get("closed_on") is not None):
        raise ValidationError("state", "an open request has neither answer nor closed_on")


def validate_request(fields: Mapping[str, object], *, today: dt.date, partial: bool = False) -> dict[str, object]:
    return f.validate_fields(fields, checkers=_CHECKERS, required=REQUIRED, today=today, partial=partial,
                             cross=_cross)


def provinces(values: Mapping[str, object]) -> frozenset[str]:
    return frozenset(v for v in (values.get("from_province"), values.get("to_province")) if isinstance(v, str))


def _days(start: object, end: object) -> int | None:
    try:
        return (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days  # type: ignore[arg-type]  # a non-str raises TypeError, caught below
    except (TypeError, ValueError):
        return None


def project(values: Mapping[str, object]) -> dict[str, object]:
    """The ``requests`` side-table row (the store adds request_id and fits values to the columns)."""
    return {"from_p": values.get("from_province"), "to_p": values.get("to_province"),
            "to_side": values.get("to_side"), "person_id": values.get("person_id"),
            "sent_on": values.get("sent_on"), "due_on": values.get("due_on"), "state": values.get("state"),
            "answered_on": values.get("answered_on"), "closed_on": values.get("closed_on"),
            "answer_days": _days(values.get("sent_on"), values.get("answered_on"))}


def check_writers(state: RecordState) -> None:
    """Every surviving version of every field was written by the side allowed to write it
    (Unauthorised otherwise). The province codes come from the record's own routing fields."""
    shown = state.values()
    frm, to = shown.get("from_province"), shown.get("to_province")
    sender, receiver = f"province-{frm}", f"province-{to}"
    for name, versions in state.fields.items():
        for v in versions:
            writer = v.at.node
            if name == "state":
                ok = (writer == receiver) if v.value == "answered" else (writer == sender)
            elif name in _RECEIVER:
                ok = writer == receiver
            elif name == "_deleted":  # every edit writes it false; only the sender may delete
                ok = writer == sender or (v.value is False and writer == receiver)
            elif name in _SENDER:
                ok = writer == sender
            else:  # a field a newer release added: kept, written by either side
                ok = writer in (sender, receiver)
            if not ok:
                raise Unauthorised(f"request {state.record_id}: {name}={v.value!r} written by {writer}; "
                                   f"only {'the receiver ' + receiver if name in _RECEIVER or v.value == 'answered' else 'the sender ' + sender} may")


def writer_problem(shown: Mapping[str, object], written: Mapping[str, object], author: str) -> str | None:
    """Why ``author`` (a province code) may not write ``written`` on a request whose values are
    ``shown`` (at the delta's dependencies, with the delta's own values on top), or None: the
    same sides as ``check_writers``, judged per v2 delta (core.graph's ``Rules.writers``)."""
    sender, receiver = shown.get("from_province"), shown.get("to_province")
    for name, value in written.items():
        if name == "state":
            ok = (author == receiver) if value == "answered" else (author == sender)
        elif name in _RECEIVER:
            ok = author == receiver
        elif name == "_deleted":
            ok = author == sender or (value is False and author == receiver)
        elif name in _SENDER:
            ok = author == sender
        else:
            ok = author in (sender, receiver)
        if not ok:
            side = "the receiver " + str(receiver) if name in _RECEIVER or value == "answered" else "the sender " + str(sender)
            return f"{name} may be written only by {side}, not {author}"
    return None


def transition(current: Mapping[str, object], op: str, clean: Mapping[str, object], own: str,
               today: dt.date) -> dict[str, object]:
    """The fields an operator's edit of an existing request writes, or why it is refused.

    ``answer``: only the receiver, only while open; ``close``: only the sender, not twice.
    Anything else (editing the subject, deleting) is refused: a request is a record of
    what was asked and answered.
    """
    frm, to, state = current.get("from_province"), current.get("to_province"), current.get("state")
    target = clean.get("state")
    if op != "update" or target not in ("answered", "closed") or set(clean) - {"state", "answer"}:
        raise ValidationError("state", "a request is changed only by answering it (state=answered with answer) "
                                       "or closing it (state=closed)")
    if target == "answered":
        if own != to:
            raise PermissionDenied(f"only the receiving province {to} may answer this request, not {own}")
        if state != "open":
            raise ValidationError("state", f"the request is {state}; only an open request can be answered")
        if not clean.get("answer"):
            raise ValidationError("answer", "required to answer")
        return {"state": "answered", "answer": clean["answer"], "answered_on": today.isoformat()}
    if own != frm:
        raise PermissionDenied(f"only the sending province {frm} may close this request, not {own}")
    if state == "closed":
        raise ValidationError("state", "the request is already closed")
    if "answer" in clean:
        raise ValidationError("answer", "closing takes no answer")
    return {"state": "closed", "closed_on": today.isoformat()}


def new(fields: Mapping[str, object], *, own: str, person: Mapping[str, object] | None, today: dt.date) -> dict[str, object]:
    """A request's fields as the sending province writes them, from the operator's input
    (``to_province``, ``person_id``, ``subject``, optional ``body`` and ``due_days``)."""
    allowed = {"to_province", "person_id", "subject", "body", "due_days"}
    extra = sorted(set(fields) - allowed)
    if extra:
        raise ValidationError(extra[0], f"not set by the sender (give {', '.join(sorted(allowed))})")
    days = fields.get("due_days", DEFAULT_DUE_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DUE_DAYS:
        raise ValidationError("due_days", f"{days!r} is not a whole number of days from 0 to {MAX_DUE_DAYS}")
    to = f.province("to_province", fields.get("to_province"), today)
    pid = f.record_id_text("person_id", fields.get("person_id"), today)
    if person is None:
        raise ValidationError("person_id", f"no person {pid} here; a request is about a person this province holds")
    sides = {"residence": person.get("residence_province"), "household": person.get("household_province")}
    if own not in sides.values():
        raise ValidationError("person_id", f"person {pid} does not involve province {own}")
    side = next((s for s, code in sides.items() if code == to and code != own), None)
    if side is None:
        raise ValidationError("to_province", f"province {to} is not involved in person {pid} "
                                             f"(household {sides['household']}, residence {sides['residence']}); "
                                             "a request goes to the person's other province")
    out = {"from_province": own, "to_province": to, "to_side": side, "person_id": pid,
           "subject": fields.get("subject"), "sent_on": today.isoformat(),
           "due_on": (today + dt.timedelta(days=days)).isoformat(), "state": "open"}
    if fields.get("body") is not None:
        out["body"] = fields["body"]
    return out


def overdue(values: Mapping[str, object], today: dt.date) -> bool:
    """Open past its due date."""
    due = values.get("due_on")
    return values.get("state") == "open" and isinstance(due, str) and due < today.isoformat()
