"""The core's fast paths against the straightforward code they replaced.

The sync core was sped up (cached views on RecordState, a merge-free apply for
new records, one-pass to_json, from_wire's bytes, inline header checks, one
reused JSON decoder). Each ``ref_*`` below is the earlier, obviously-correct
implementation, kept here as an oracle; the properties say the fast code
returns the same values, the same bytes and the same errors on random input,
including input no honest peer would send (unsorted or dominated versions,
zero clock counts, unused stamps, 1 vs true, wrong types).
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import canonical
from core.apply import Outcome, apply
from core.change import OPS, Change, parse, parse_head, state_provinces
from core.clock import Order, VectorClock
from core.errors import Malformed
from core.hlc import Timestamp
from core.kinds import get_kind
from core.person import person_provinces
from core.provinces import PROVINCES, check_province
from core.record import DELETED, RecordState, Version, _maximal, empty

KIND, RID = "person", "p-1"
NODES = ("province-11", "province-31", "province-44")

# -- the oracles (the code before the speed-up) -------------------------------------


def ref_compare(a: VectorClock, b: VectorClock) -> Order:
    x, y = dict(a.entries), dict(b.entries)
    less = greater = False
    for n in x.keys() | y.keys():
        p, q = x.get(n, 0), y.get(n, 0)
        if p < q:
            less = True
        elif p > q:
            greater = True
    if less and greater:
        return Order.CONCURRENT
    if less:
        return Order.BEFORE
    if greater:
        return Order.AFTER
    return Order.EQUAL


def ref_clock_from_json(obj: object) -> VectorClock:
    if not isinstance(obj, dict):
        raise Malformed("clock: must be an object of node id -> count")
    for node, count in obj.items():
        if not isinstance(node, str) or not node:
            raise Malformed("clock: node ids must be non-empty strings")
        if type(count) is not int or not 0 <= count < 2**63:
            raise Malformed(f"clock: count for {node!r} must be an integer in 0..2**63-1")
    return VectorClock.of(obj)


def ref_maximal(versions) -> tuple[Version, ...]:
    versions = tuple(versions)
    if len(versions) == 1:
        return versions
    unique = {(v.rank(), v.clock.entries): v for v in versions}
    pool = list(unique.values())
    keep = [v for v in pool if not any(ref_compare(v.clock, w.clock) is Order.BEFORE for w in pool)]
    keep.sort(key=lambda v: (v.rank(), v.clock.entries), reverse=True)
    return tuple(keep)


def ref_merge(a: RecordState, b: RecordState) -> RecordState:
    if (a.kind, a.record_id) != (b.kind, b.record_id):
        raise ValueError("cannot merge states of different records")
    names = a.fields.keys() | b.fields.keys()
    return RecordState(a.kind, a.record_id, {n: ref_maximal(a.fields.get(n, ()) + b.fields.get(n, ())) for n in names})


def ref_clock(s: RecordState) -> VectorClock:
    acc: dict[str, int] = {}
    for versions in s.fields.values():
        for v in versions:
            for node, count in v.clock.entries:
                if count > acc.get(node, 0):
                    acc[node] = count
    return VectorClock.of(acc)


def ref_values(s: RecordState) -> dict[str, object]:
    return {k: vs[0].value for k, vs in sorted(s.fields.items()) if k != DELETED and vs}


def ref_deleted(s: RecordState) -> bool:
    vs = s.fields.get(DELETED)
    w = vs[0] if vs else None
    return bool(w and w.value is True)


def ref_conflicts(s: RecordState) -> dict[str, tuple[Version, ...]]:
    out = {}
    for name, versions in sorted(s.fields.items()):
        if len(versions) >= 2 and len({canonical.scalar_bytes(v.value) for v in versions}) > 1:
            out[name] = versions
    return out


def ref_to_json(s: RecordState) -> dict[str, object]:
    def key(v: Version):
        return (v.at.wall_ms, v.at.logical, v.at.node, v.clock.entries)

    stamps: dict = {}
    for versions in s.fields.values():
        for v in versions:
            stamps.setdefault(key(v), 0)
    order = sorted(stamps)
    for i, k in enumerate(order):
        stamps[k] = i
    return {
        "stamps": [[dict(entries), [wall, logical, node]] for wall, logical, node, entries in order],
        "fields": {name: [[v.value, stamps[key(v)]] for v in vs] for name, vs in sorted(s.fields.items())},
    }


def ref_bytes(s: RecordState) -> bytes:
    return canonical.dumps(ref_to_json(s), checked=False)


def ref_from_json(kind: str, record_id: str, obj: object) -> RecordState:
    if not isinstance(obj, dict) or set(obj) != {"stamps", "fields"}:
        raise Malformed("state: must be an object with keys stamps and fields")
    raw_stamps, raw_fields = obj["stamps"], obj["fields"]
    if not isinstance(raw_stamps, list) or not isinstance(raw_fields, dict):
        raise Malformed("state: stamps must be a list and fields an object")
    stamps = []
    for i, stamp in enumerate(raw_stamps):
        if not isinstance(stamp, list) or len(stamp) != 2:
            raise Malformed(f"state.stamps[{i}]: must be [clock, hlc timestamp]")
        try:
            stamps.append((ref_clock_from_json(stamp[0]), Timestamp.from_json(stamp[1])))
        except Malformed as exc:
            raise Malformed(f"state.stamps[{i}]: {exc}") from None
    fields = {}
    for name, versions in raw_fields.items():
        if not isinstance(versions, list) or not versions:
            raise Malformed(f"state.fields.{name}: must be a non-empty list of versions")
        out = []
        for j, pair in enumerate(versions):
            if (not isinstance(pair, list) or len(pair) != 2 or type(pair[1]) is not int
                    or not 0 <= pair[1] < len(stamps)):
                raise Malformed(f"state.fields.{name}[{j}]: must be [value, index into stamps]")
            clock, at = stamps[pair[1]]
            out.append(Version(pair[0], clock, at))
        fields[name] = ref_maximal(out)
    return RecordState(kind, record_id, fields)


def ref_check_province(field: str, value: object) -> str:
    from core.errors import ValidationError

    if isinstance(value, bool):
        raise ValidationError(field, f"province code must be a 2-digit string, got {value!r}")
    if isinstance(value, int):
        code = str(value)
    elif isinstance(value, str):
        code = value.strip()
    else:
        raise ValidationError(field, f"province code must be a 2-digit string, got {type(value).__name__}")
    if code not in PROVINCES:
        raise ValidationError(field, f"unknown province code '{code}'")
    return code


def ref_person_provinces(fields) -> frozenset[str]:
    return frozenset(
        ref_check_province(f, fields[f])
        for f in ("household_province", "residence_province")
        if fields.get(f) is not None
    )


def ref_state_provinces(state: RecordState) -> frozenset[str]:
    kind = get_kind(state.kind)
    out: set[str] = set()
    for name in kind.routing_fields:
        for version in state.fields.get(name, ()):
            out |= ref_person_provinces({name: version.value})
    return frozenset(out)


def ref_apply(current: RecordState | None, change: Change) -> Outcome:
    before = current or empty(change.kind, change.record_id)
    after = ref_merge(before, change.state)
    had = set(ref_conflicts(before))
    return Outcome(after, after != before, tuple(sorted(set(ref_conflicts(after)) - had)))


def _no_float(text: str) -> object:
    raise Malformed(f"body: non-integer number {text!r} is not allowed")


def ref_loads(data: bytes) -> object:
    try:
        return json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed(f"body: not valid UTF-8 JSON ({exc})") from None
    except ValueError as exc:
        raise Malformed(f"body: unacceptable JSON value ({exc})") from None


def _ref_get(obj, key: str, typ: type) -> object:
    if key not in obj:
        raise Malformed(f"{key}: missing")
    value = obj[key]
    if typ is int and type(value) is not int:
        raise Malformed(f"{key}: must be an integer")
    if typ is not int and not isinstance(value, typ):
        raise Malformed(f"{key}: must be {typ.__name__}")
    return value


def ref_header(obj) -> dict[str, object]:
    version = _ref_get(obj, "v", int)
    if version < 1:
        raise Malformed(f"v: protocol version {version} is not supported")
    kind = _ref_get(obj, "kind", str)
    try:
        get_kind(kind)
    except Exception:
        raise Malformed(f"kind: unknown record kind {kind!r}") from None
    record_id = _ref_get(obj, "id", str)
    if not record_id or len(record_id) > 64:
        raise Malformed("id: must be 1..64 characters")
    origin = _ref_get(obj, "origin", str)
    seq = _ref_get(obj, "seq", int)
    if seq < 1 or seq >= 2**63:
        raise Malformed(f"seq: {seq} is out of range")
    op = _ref_get(obj, "op", str)
    if op not in OPS:
        raise Malformed(f"op: {op!r} is not one of {', '.join(OPS)}")
    if "operator" not in obj:
        raise Malformed("operator: missing")
    operator = obj["operator"]
    if operator is not None and not isinstance(operator, str):
        raise Malformed("operator: must be a string or null")
    prior = _ref_get(obj, "prior", list)
    if not all(isinstance(p, str) and p in PROVINCES for p in prior):
        raise Malformed("prior: must be a list of province codes")
    return dict(kind=kind, record_id=record_id, origin=origin, seq=seq, at=Timestamp.from_json(_ref_get(obj, "at", list)),
                op=op, operator=operator, prior=frozenset(prior))


def ref_parse(body: bytes) -> Change:
    obj = ref_loads(body)
    if not isinstance(obj, dict):
        raise Malformed("body: must be a JSON object")
    head = ref_header(obj)
    state = ref_from_json(head["kind"], head["record_id"], _ref_get(obj, "state", dict))
    return Change(state=state, **head)


def ref_parse_head(body: bytes) -> tuple:
    obj = ref_loads(body)
    if not isinstance(obj, dict):
        raise Malformed("body: must be a JSON object")
    head = ref_header(obj)
    state = _ref_get(obj, "state", dict)
    fields = state.get("fields")
    if not isinstance(fields, dict):
        raise Malformed("state.fields: must be an object")
    routes: set[str] = set(head["prior"])
    for name in ("household_province", "residence_province"):
        versions = fields.get(name, [])
        if not isinstance(versions, list):
            raise Malformed(f"state.fields.{name}: must be a list of versions")
        for version in versions:
            if not isinstance(version, list) or len(version) != 2:
                raise Malformed(f"state.fields.{name}: must be [value, index into stamps]")
            routes |= ref_person_provinces({name: version[0]})
    return tuple(head.values()) + (frozenset(routes),)


def outcome(fn, *args):
    """("ok", value) or ("err", type name, message): what a call did."""
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the exception itself is what is compared
        return ("err", type(exc).__name__, str(exc))


def same_versions(a, b) -> bool:
    """Same Version objects in the same order (identity, since 1 == True)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


# -- random states ---------------------------------------------------------------

VALUES = (None, True, False, 0, 1, 2, "11", "44", "31", "张三", "李四", "x")
clocks = st.dictionaries(st.sampled_from(NODES), st.integers(0, 3), max_size=3)
stamps_ = st.tuples(clocks, st.integers(0, 3), st.integers(0, 1), st.sampled_from(NODES))
field_names = st.sampled_from(("name", "children", "household_province", "residence_province", DELETED))


@st.composite
def states(draw, normalised: bool | None = None) -> RecordState:
    """A state over a small pool of stamps, shared or copied (equal, distinct objects)."""
    pool = [(VectorClock.of(c), Timestamp(w, lg, n)) for c, w, lg, n in draw(st.lists(stamps_, min_size=1, max_size=4))]
    fields = {}
    for name in draw(st.lists(field_names, max_size=5, unique=True)):
        vs = []
        for _ in range(draw(st.integers(1, 4))):
            clock, at = pool[draw(st.integers(0, len(pool) - 1))]
            if draw(st.integers(0, 4)) == 0:  # an equal stamp held by other objects
                clock, at = VectorClock(clock.entries), Timestamp(at.wall_ms, at.logical, at.node)
            vs.append(Version(draw(st.sampled_from(VALUES)), clock, at))
        norm = draw(st.booleans()) if normalised is None else normalised
        fields[name] = ref_maximal(vs) if norm else tuple(vs)
    return RecordState(KIND, RID, fields)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(clocks, st.integers(0, 3), st.sampled_from(VALUES)), min_size=1, max_size=5))
def test_maximal_keeps_the_same_versions_in_the_same_order(raw) -> None:
    vs = [Version(v, VectorClock.of(c), Timestamp(w, 0, NODES[0])) for c, w, v in raw]
    assert same_versions(_maximal(vs), ref_maximal(vs))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NODES), st.integers(-1, 3)), max_size=4),
       st.lists(st.tuples(st.sampled_from(NODES), st.integers(-1, 3)), max_size=4))
def test_compare_matches_even_on_non_canonical_entries(a, b) -> None:
    x, y = VectorClock(tuple(a)), VectorClock(tuple(b))
    assert x.compare(y) is ref_compare(x, y)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(NODES + ("",)), st.sampled_from([0, 1, 2, -1, True, "1", None]), max_size=3)
       | st.sampled_from([None, [], "x", 1]))
def test_clock_from_json_matches(obj) -> None:
    assert outcome(VectorClock.from_json, obj) == outcome(ref_clock_from_json, obj)


@settings(max_examples=500, deadline=None)
@given(states(), states())
def test_merge_and_views_match(a: RecordState, b: RecordState) -> None:
    m, r = a.merge(b), ref_merge(a, b)
    assert m.fields.keys() == r.fields.keys()
    assert all(same_versions(m.fields[n], r.fields[n]) for n in r.fields)
    for s in (a, b, m):
        for _ in range(2):  # cached the second time
            assert s.clock == ref_clock(s)
            assert s.values() == ref_values(s)
            assert s.deleted is ref_deleted(s)
            assert s.conflicts() == ref_conflicts(s)
            assert list(s.conflicts()) == list(ref_conflicts(s))
            assert outcome(state_provinces, s) == outcome(ref_state_provinces, s)
            assert s.to_json() == ref_to_json(s)
            assert s.to_bytes() == ref_bytes(s)
        s.conflicts().clear()  # callers get copies
        s.values().clear()
        assert s.conflicts() == ref_conflicts(s) and s.values() == ref_values(s)


def _mutate(obj: dict, rng: random.Random) -> dict:
    """Something a peer could send: reordered, redundant, or wrong."""
    choice = rng.randrange(10)
    stamps, fields = obj["stamps"], obj["fields"]
    if choice == 0:
        rng.shuffle(stamps)  # indices now point elsewhere: still a valid state, in another order
    elif choice == 1:
        stamps.append([{NODES[2]: 9}, [5, 0, NODES[2]]])  # unused
    elif choice == 2 and stamps:
        stamps[0][0][NODES[1]] = 0  # a zero count
    elif choice == 3:
        for vs in fields.values():
            vs.reverse()
    elif choice == 4 and fields:
        name = rng.choice(sorted(fields))
        fields[name] = fields[name] + fields[name]  # duplicates
    elif choice == 5 and fields:
        name = rng.choice(sorted(fields))
        fields[name] = rng.choice([[], "x", [["v"]], [["v", True]], [["v", 99]], [["v", -1]], [[1, 0], "z"]])
    elif choice == 6 and stamps:
        stamps[rng.randrange(len(stamps))] = rng.choice([[], [{}], [{"": 1}, [0, 0, "n"]], [{"n": 1}, [0, 0]],
                                                         [{"n": True}, [0, 0, "n"]], [{"n": 1}, [-1, 0, "n"]]])
    elif choice == 7:
        obj = rng.choice([{"stamps": stamps}, {"stamps": stamps, "fields": fields, "x": 1}, [], {"stamps": {}, "fields": {}}])
    return obj


@settings(max_examples=800, deadline=None)
@given(states(), st.integers(0, 2**32))
def test_from_json_and_from_wire_match(state: RecordState, seed: int) -> None:
    rng = random.Random(seed)
    obj = json.loads(json.dumps(ref_to_json(state)))
    if rng.random() < 0.7:
        obj = _mutate(obj, rng)
    expected = outcome(ref_from_json, KIND, RID, obj)
    for decode in (RecordState.from_json, RecordState.from_wire):
        got = outcome(decode, KIND, RID, json.loads(json.dumps(obj)))
        assert got[0] == expected[0], (got, expected)
        if got[0] == "err":
            assert got == expected
            continue
        s, r = got[1], expected[1]
        assert s == r
        assert all(x == y and type(x.value) is type(y.value) for n in r.fields for x, y in zip(s.fields[n], r.fields[n]))
        assert outcome(s.to_bytes) == outcome(ref_bytes, r)


@settings(max_examples=800, deadline=None)
@given(states())
def test_apply_to_a_new_record_matches_the_merge(state: RecordState) -> None:
    change = Change(KIND, RID, NODES[0], 1, Timestamp(1, 0, NODES[0]), "update", None, frozenset(), state)
    fast, ref = apply(None, change), ref_apply(None, change)
    general = apply(empty(KIND, RID), change)  # the same, through the merge
    for got in (fast, general):
        assert got.state == ref.state
        assert all(same_versions(got.state.fields[n], ref.state.fields[n]) or
                   [(v.value, v.clock, v.at) for v in got.state.fields[n]] ==
                   [(v.value, v.clock, v.at) for v in ref.state.fields[n]] for n in ref.state.fields)
        assert got.state.to_bytes() == ref_bytes(ref.state)
        assert got.changed == ref.changed
        assert got.opened == ref.opened


def test_apply_fast_path_leaves_odd_states_to_the_merge() -> None:
    at, c = Timestamp(1, 0, NODES[0]), VectorClock.of({NODES[0]: 1})
    v1, vt = Version(1, c, at), Version(True, c, at)
    odd = RecordState(KIND, RID, {"children": (v1, vt)})  # 1 == True, but not _maximal's order
    change = Change(KIND, RID, NODES[0], 1, at, "update", None, frozenset(), odd)
    got, ref = apply(None, change), ref_apply(None, change)
    assert got.state.to_bytes() == ref_bytes(ref.state)
    assert same_versions(got.state.fields["children"], (vt, v1))
    other = Change(KIND, "p-2", NODES[0], 1, at, "update", None, frozenset(), odd)
    with pytest.raises(ValueError):
        apply(None, other)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([None, True, False, 11, 44, 99, "11", " 44 ", "4", "xx", "", 1.5, ["11"]]),
       st.sampled_from([None, True, 31, "31", "44 ", "99", b"11"]))
def test_person_provinces_matches(h, r) -> None:
    for fields in ({"household_province": h, "residence_province": r}, {"household_province": h},
                   {"residence_province": r}, {}):
        assert outcome(person_provinces, fields) == outcome(ref_person_provinces, fields)
    assert outcome(check_province, "f", h) == outcome(ref_check_province, "f", h)


# -- decoding bytes -----------------------------------------------------------------

JSONISH = st.one_of(
    st.text(alphabet='{}[]:,"\\ -+.eE0123456789truefalsnNaIiy\ud800\udc00u\t\n', max_size=30),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                 max_leaves=10).map(lambda v: json.dumps(v, ensure_ascii=bool(hash(str(v)) % 2))),
)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8 bytes


@settings(max_examples=2000, deadline=None)
@given(JSONISH | st.sampled_from(['\ufeff{}', '"\\ud800"', '1' * 5000, str(2**64), '-0', '{"a":1,"a":2}']),
       st.booleans())
def test_loads_matches(text: str, raw: bool) -> None:
    data = _bytes(text) if raw else text.encode("utf-8", "replace")
    got, ref = outcome(canonical.loads, data), outcome(ref_loads, data)
    assert got[0] == ref[0] and repr(got) == repr(ref)


HEADER_VALUES = st.sampled_from([None, True, 0, 1, -1, 2**63, "1", "", "x" * 65, "person", "update", "province-11",
                                 [], ["11"], ["11", "44"], [11], ["zz"], [1000, 0, "province-11"], [1000, 0],
                                 [-1, 0, "n"], {}, {"fields": {}}, {"fields": []}])


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["v", "kind", "id", "origin", "seq", "at", "op", "operator", "prior",
                                           "state", "x_future"]),
                          st.one_of(st.just("<drop>"), HEADER_VALUES)), max_size=3),
       states(normalised=True))
def test_parse_and_parse_head_match(edits, state: RecordState) -> None:
    change = Change(KIND, RID, NODES[0], 7, Timestamp(1000, 2, NODES[0]), "update", "op-1", frozenset({"31"}), state)
    obj = json.loads(change.to_body())
    for key, value in edits:
        if value == "<drop>":
            obj.pop(key, None)
        else:
            obj[key] = value
    body = json.dumps(obj, ensure_ascii=False).encode()
    got, ref = outcome(parse, body), outcome(ref_parse, body)
    assert got[:1] == ref[:1] and (got == ref if got[0] == "err" else got[1] == ref[1]), (got, ref)
    if got[0] == "ok":
        assert got[1].state.to_bytes() == ref_bytes(ref[1].state)
        assert outcome(lambda: got[1].routes) == outcome(lambda: ref_state_provinces(ref[1].state) | ref[1].prior)
    got_head, ref_head = outcome(parse_head, body), outcome(ref_parse_head, body)
    if ref_head[0] == "err":
        assert got_head == ref_head
    else:
        h = got_head[1]
        assert (h.kind, h.record_id, h.origin, h.seq, h.at, h.op, h.operator, h.prior, h.routes) == ref_head[1]


def ref_cross_checks(out) -> None:
    from core.errors import ValidationError
    from core.idnumber import id_birth_date, id_sex

    id_number, birth = out.get("id_number"), out.get("birth_date")
    if isinstance(id_number, str):
        if isinstance(birth, str):
            encoded = id_birth_date(id_number).isoformat()
            if birth != encoded:
                raise ValidationError("birth_date", f"{birth} does not match id_number (which encodes {encoded})")
        sex = out.get("sex")
        if isinstance(sex, str) and sex != id_sex(id_number):
            raise ValidationError("sex", f"{sex} does not match id_number (which encodes {id_sex(id_number)})")
    if isinstance(birth, str):
        for later in ("moved_in_on", "last_service_on"):
            value = out.get(later)
            if isinstance(value, str) and value < birth:
                raise ValidationError(later, f"{value} is before birth_date {birth}")


@settings(max_examples=500, deadline=None)
@given(st.dates(max_value=dt.date(2020, 1, 1)),
       st.integers(0, 999), st.dates(max_value=dt.date(2020, 1, 1)),
       st.sampled_from(["M", "F"]), st.booleans(), st.booleans())
def test_person_cross_checks_match(born, serial: int, claimed, sex: str, give_birth: bool, give_sex: bool) -> None:
    from core.idnumber import make_id_number
    from core.person import _cross_checks

    if born.year < 1000:
        born = born.replace(year=1000 + born.year)  # make_id_number needs 4 digits; still exercises years < 2000
    out: dict[str, object] = {"id_number": make_id_number("110101", born, serial)}
    if give_birth:
        out["birth_date"] = (born if serial % 3 else claimed).isoformat()
    if give_sex:
        out["sex"] = sex
    out["moved_in_on"] = (claimed + dt.timedelta(days=1)).isoformat() if claimed.year < 2019 else None
    assert outcome(_cross_checks, out) == outcome(ref_cross_checks, out)


# -- merge_conflicts: its shortcut (no two shown versions concurrent: nothing to judge) ---------

_ID_1990 = "110101199001010015"  # encodes 1990-01-01, M (a valid number: check character included)
_ID_2000 = "110101200006190022"
PERSON_POOL: dict[str, tuple[object, ...]] = {
    "birth_date": ("1990-01-01", "2000-06-19"),
    "moved_in_on": ("1989-12-31", "2001-01-01"),
    "last_service_on": ("1995-05-05", "2003-03-03"),
    "sex": ("M", "F"),
    "id_number": (_ID_1990, _ID_2000),
    "name": ("张三",),
    DELETED: (False, True),
}


@st.composite
def person_states(draw) -> RecordState:
    """Person states whose fields break the rules between fields or not, written by concurrent or
    ordered clocks, normalised as every stored state is."""
    pool = [(VectorClock.of(c), Timestamp(w, lg, n)) for c, w, lg, n in draw(st.lists(stamps_, min_size=1, max_size=4))]
    fields = {}
    for name in draw(st.lists(st.sampled_from(sorted(PERSON_POOL)), max_size=len(PERSON_POOL), unique=True)):
        vs = [Version(draw(st.sampled_from(PERSON_POOL[name])), *pool[draw(st.integers(0, len(pool) - 1))])
              for _ in range(draw(st.integers(1, 3)))]
        fields[name] = ref_maximal(vs)
    return RecordState(KIND, RID, fields)


def test_the_pool_ids_are_valid_and_encode_their_dates() -> None:
    from core.idnumber import id_birth_date, id_sex

    assert (id_birth_date(_ID_1990), id_sex(_ID_1990)) == (dt.date(1990, 1, 1), "M")
    assert (id_birth_date(_ID_2000), id_sex(_ID_2000)) == (dt.date(2000, 6, 19), "F")


@settings(max_examples=1000, deadline=None)
@given(person_states())
def test_merge_conflicts_shortcut_matches_judging_every_rule(state: RecordState) -> None:
    from core.person import _judged_merge_conflicts, merge_conflicts

    assert merge_conflicts(state) == _judged_merge_conflicts(state)
