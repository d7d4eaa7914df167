"""The change envelope: exact wire round trip, strict parsing, and who may write."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import canonical
from core.apply import apply, authorise, local_write
from core.change import MAX_BODY, OPS, PROTOCOL, Change, parse, state_provinces
from core.errors import Malformed, RemoteError, Unauthorised
from core.hlc import Timestamp

A, B = "province-11", "province-44"
PERSON = {"name": "张三", "children": 1, "household_province": "11", "residence_province": "11"}


def write(current=None, values=None, *, node=A, seq=1, wall=1000, op="update", operator="operator-11-desk") -> Change:
    return local_write(
        current,
        kind="person",
        record_id="p-1",
        values=PERSON if values is None else values,
        node=node,
        seq=seq,
        at=Timestamp(wall, 0, node),
        op=("create" if current is None and op == "update" else op),
        operator=operator,
    )


def conflicted() -> Change:
    """A change whose state carries an open conflict and a tombstone conflict."""
    base = write()
    moved = write(base.state, {"residence_province": "44"}, seq=2, wall=2000)
    other = write(base.state, {"residence_province": "31"}, node=B, seq=1, wall=1500)
    deleted = write(base.state, {}, node=B, seq=2, wall=1600, op="delete")
    merged = apply(apply(moved.state, other).state, deleted).state
    assert set(merged.conflicts()) == {"residence_province", "_deleted"}
    return write(merged, {"children": 2}, seq=3, wall=3000)


def body_obj(change: Change) -> dict:
    return json.loads(change.to_body())


def encode(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


# -- round trip ----------------------------------------------------------------


@pytest.mark.parametrize("make", [write, conflicted, lambda: write(operator=None)])
def test_parse_of_to_body_round_trips(make) -> None:
    change = make()
    body = change.to_body()
    back = parse(body)
    assert back == change
    assert back.to_body() == body  # byte-identical: what is signed is what is re-derived
    assert back.state.to_bytes() == change.state.to_bytes()
    assert back.state.conflicts() == change.state.conflicts()
    assert back.routes == change.routes
    assert body == canonical.dumps(json.loads(body))  # the body is canonical JSON
    obj = json.loads(body)
    assert obj["v"] == PROTOCOL
    assert obj["prior"] == sorted(obj["prior"])


@given(
    seq=st.integers(1, 2**63 - 1),
    wall=st.integers(0, 2**53),
    op=st.sampled_from(OPS),
    operator=st.one_of(st.none(), st.sampled_from(["operator-11-desk", "operator-national-x"])),
    name=st.text(min_size=1, max_size=20),
    children=st.integers(0, 30),
)
@settings(max_examples=200, deadline=None)
def test_round_trip_property(seq: int, wall: int, op: str, operator: str | None, name: str, children: int) -> None:
    values = {"name": name, "children": children, "residence_province": "44"}
    change = write(None, values, seq=seq, wall=wall, op=op, operator=operator)
    change = Change(change.kind, change.record_id, change.origin, seq, change.at, op, operator,
                    change.prior, change.state)
    assert parse(change.to_body()) == change


def test_unknown_top_level_keys_are_accepted() -> None:
    change = conflicted()
    obj = body_obj(change)
    obj["x_from_a_newer_release"] = {"nested": [1, "two", None]}
    obj["zz"] = "later"
    assert parse(canonical.dumps(obj)) == change
    # and the protocol version may be newer too
    obj["v"] = PROTOCOL + 1
    assert parse(canonical.dumps(obj)) == change


# -- refusals ---------------------------------------------------------------------

REQUIRED = ["v", "kind", "id", "origin", "seq", "at", "op", "operator", "prior", "state"]


@pytest.mark.parametrize("key", REQUIRED)
def test_missing_key_is_refused_naming_it(key: str) -> None:
    obj = body_obj(write())
    del obj[key]
    with pytest.raises(Malformed) as exc:
        parse(encode(obj))
    assert str(exc.value).startswith(f"{key}:")


WRONG_TYPES = [
    ("v", "1"),
    ("v", None),
    ("v", True),
    ("v", 0),
    ("kind", 1),
    ("kind", None),
    ("kind", ["person"]),
    ("kind", "household"),
    ("kind", "Person"),
    ("id", 5),
    ("id", ""),
    ("id", "x" * 65),
    ("origin", None),
    ("origin", 11),
    ("seq", "1"),
    ("seq", True),
    ("seq", False),
    ("seq", None),
    ("seq", 0),
    ("seq", -1),
    ("seq", 2**63),
    ("at", "1000"),
    ("at", [1000, 0]),
    ("at", [1000, 0, "province-11", 1]),
    ("at", [True, 0, "province-11"]),
    ("at", [1000, False, "province-11"]),
    ("at", [-1, 0, "province-11"]),
    ("at", [1000, 0, 11]),
    ("at", {"wall_ms": 1000}),
    ("op", "erase"),
    ("op", "Update"),
    ("op", 1),
    ("op", None),
    ("operator", 5),
    ("operator", ["operator-11-desk"]),
    ("operator", False),
    ("prior", "11"),
    ("prior", [11]),
    ("prior", [None]),
    ("prior", {"11": True}),
    ("prior", None),
    ("state", []),
    ("state", "{}"),
    ("state", None),
]


@pytest.mark.parametrize("key, value", WRONG_TYPES)
def test_wrong_values_are_refused_naming_the_key(key: str, value: object) -> None:
    obj = body_obj(write())
    obj[key] = value
    with pytest.raises(Malformed) as exc:
        parse(encode(obj))
    assert str(exc.value).startswith(f"{key}:"), str(exc.value)


def _stamp_bad(obj: dict, part: int, value: object) -> dict:
    obj["state"]["stamps"][0][part] = value
    return obj


def _fields(obj: dict) -> dict:
    return obj["state"]["fields"]


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda o: _stamp_bad(o, 0, {"province-11": True}), "state.stamps[0]"),
        (lambda o: _stamp_bad(o, 0, {"province-11": -1}), "state.stamps[0]"),
        (lambda o: _stamp_bad(o, 0, [["province-11", 1]]), "state.stamps[0]"),
        (lambda o: _stamp_bad(o, 1, [1, 0]), "state.stamps[0]"),
        (lambda o: _stamp_bad(o, 1, [True, 0, "province-11"]), "state.stamps[0]"),
        (lambda o: o["state"]["stamps"][0].pop() and o, "state.stamps[0]"),
        (lambda o: _fields(o).update({"name": []}) or o, "state.fields.name"),
        (lambda o: _fields(o).update({"name": "张三"}) or o, "state.fields.name"),
        (lambda o: _fields(o).update({"name": [["张三", 7]]}) or o, "state.fields.name"),
        (lambda o: _fields(o).update({"name": [["张三", True]]}) or o, "state.fields.name"),
        (lambda o: _fields(o).update({"name": [["张三"]]}) or o, "state.fields.name"),
        (lambda o: o["state"].update({"extra": 1}) or o, "state"),
        (lambda o: o["state"].pop("stamps") and o, "state"),
    ],
)
def test_bad_state_is_refused_naming_the_field(mutate, where: str) -> None:
    obj = mutate(body_obj(write()))
    with pytest.raises(Malformed) as exc:
        parse(encode(obj))
    assert str(exc.value).startswith(where), str(exc.value)


@pytest.mark.parametrize(
    "text",
    [
        '"v": 1.0',
        '"seq": 1.0',
        '"seq": 1e3',
        '"at": [1000.5, 0, "province-11"]',
        '"state": {"stamps": [[{"province-11": 1}, [1000, 0, "province-11"]]], "fields": {"children": [[1.5, 0]]}}',
        '"state": {"stamps": [[{"province-11": 1.0}, [1000, 0, "province-11"]]], "fields": {"children": [[1, 0]]}}',
        '"x_future": [NaN]',
        '"x_future": {"deep": -Infinity}',
        '"x_future": 0.0',
    ],
)
def test_floats_anywhere_are_refused(text: str) -> None:
    obj = body_obj(write())
    key = text.split('"')[1]
    obj.pop(key, None)
    body = encode(obj)
    body = body[:-1] + b", " + text.encode() + b"}"
    with pytest.raises(Malformed, match=r"^body: .*(non-integer|not allowed)"):
        parse(body)


def test_oversized_body_is_refused_before_decoding() -> None:
    obj = body_obj(write())
    obj["x_pad"] = "x" * MAX_BODY
    with pytest.raises(Malformed, match=r"^body: .*limit"):
        parse(encode(obj))
    with pytest.raises(Malformed, match=r"^body: .*limit"):
        parse(b"\xff" * (MAX_BODY + 1))  # not even decoded
    # exactly at the limit is fine
    obj["x_pad"] = ""
    base = len(encode(obj))
    obj["x_pad"] = "x" * (MAX_BODY - base)
    assert len(encode(obj)) == MAX_BODY
    assert parse(encode(obj)) == write()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"v": 1',
        b"[]",
        b'"a string"',
        b"1",
        b"null",
        b"\xff\xfe{}",
        '{"v": 1, "kind": "person"}'.encode("utf-16"),
        b'{"v": 1, "id": "\xe5\xbc"}',  # truncated UTF-8 sequence
        b"[" * 100_000 + b"]" * 100_000,  # nesting deep enough to exhaust the parser
        b'{"x_future": ' + b"1" * 5000 + b"}",  # integer literal over Python's digit limit
    ],
)
def test_undecodable_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(Malformed) as exc:
        parse(body)
    assert str(exc.value).startswith("body:")


def test_truncated_real_body_is_refused() -> None:
    body = conflicted().to_body()
    for cut in range(0, len(body) - 1, max(1, len(body) // 50)):
        with pytest.raises(Malformed):
            parse(body[:cut])


def test_malformed_is_a_remote_error() -> None:
    with pytest.raises(RemoteError):
        parse(b"{")


# -- routes ---------------------------------------------------------------------


def test_routes_include_prior_and_every_surviving_value() -> None:
    first = write()
    assert first.prior == frozenset()
    assert first.routes == frozenset({"11"})
    moved = write(first.state, {"household_province": "44", "residence_province": "31"}, seq=2, wall=2000)
    assert moved.prior == frozenset({"11"})  # the province the person left is told
    assert state_provinces(moved.state) == frozenset({"44", "31"})
    assert moved.routes == frozenset({"11", "31", "44"})
    c = conflicted()  # residence conflicts between 44 and 31; household 11
    assert state_provinces(c.state) == frozenset({"11", "31", "44"})


# -- authorise --------------------------------------------------------------------


def test_authorise_accepts_the_origin_when_involved() -> None:
    change = write()
    assert authorise(change, A) is None
    assert authorise(parse(change.to_body()), A) is None


def test_authorise_accepts_a_province_involved_only_before_the_write() -> None:
    first = write()
    gone = write(first.state, {"household_province": "44", "residence_province": "44"}, seq=2, wall=2000)
    assert "11" not in state_provinces(gone.state)
    assert authorise(gone, A) is None  # 11 wrote the move away: involved via prior


def test_authorise_accepts_a_province_involved_only_through_a_conflict() -> None:
    c = conflicted()
    assert c.state.values()["residence_province"] == "44"
    b_change = write(c.state, {"name": "李四"}, node="province-31", seq=1, wall=4000)
    assert authorise(b_change, "province-31") is None


def test_authorise_refuses_an_uninvolved_province() -> None:
    change = write(None, {"name": "张三", "household_province": "44", "residence_province": "44"})
    with pytest.raises(Unauthorised, match="province-11 may not write"):
        authorise(change, A)
    # Any other uninvolved province, signing as itself, is refused the same way.
    forged = Change(change.kind, change.record_id, "province-31", 1, change.at, "update", None,
                    frozenset(), change.state)
    with pytest.raises(Unauthorised):
        authorise(forged, "province-31")


def test_authorise_refuses_an_author_that_is_not_the_origin() -> None:
    change = write(None, {"name": "张三", "household_province": "11", "residence_province": "44"})
    with pytest.raises(Unauthorised, match="origin claims"):
        authorise(change, B)  # 44 is involved, but signed a change claiming 11 wrote it


@pytest.mark.parametrize("author", ["hub-pearl", "hub-national", "operator-11-desk", "operator-national-admin"])
def test_authorise_refuses_hubs_and_operators(author: str) -> None:
    change = write()
    as_origin = Change(change.kind, change.record_id, author, 1, change.at, "update", None,
                       frozenset({"11"}), change.state)
    for c in (change, as_origin):
        with pytest.raises(Unauthorised):
            authorise(c, author)


# -- apply ------------------------------------------------------------------------


def test_apply_reports_changes_and_opened_conflicts() -> None:
    base = write()
    a = write(base.state, {"name": "李四"}, seq=2, wall=2000)
    b = write(base.state, {"name": "王五"}, node=B, seq=1, wall=1500)
    out = apply(None, base)
    assert out.changed and out.state == base.state and out.opened == ()
    out = apply(out.state, a)
    assert out.changed and out.opened == ()
    out2 = apply(out.state, b)
    assert out2.changed and out2.opened == ("name",)
    assert out2.state.values()["name"] == "李四"
    again = apply(out2.state, b)
    assert not again.changed and again.opened == ()
    old = apply(out2.state, base)  # an old change changes nothing
    assert not old.changed and old.state == out2.state
