"""Fuzzing the boundary where bytes from peers enter a process.

Everything a peer sends goes through ``core.change.parse``/``parse_head``
(the body), ``runtime.wire.envelope`` (the protobuf seal), ``runtime.intake.check``
(signature, origin, authorisation) and ``store.Store.ingest`` (one
transaction per batch). A peer must not be able to make any of them raise
anything but a ``core.errors.SyncError`` (which becomes a quarantine entry or
a clear gRPC status), and ingest must not raise at all on what intake let
through: a crash there aborts the whole batch every time it is retried.

Inputs: arbitrary bytes; real change bodies mutated byte-wise (flips,
truncation, insertion) and structurally (any JSON value, at any depth,
replaced, removed, added or wrapped, including floats, huge integers, NULs and
lone surrogates); arbitrary ``SignedChange`` protobufs; and batches mixing
genuine signed changes with forgeries and with mutated bodies that the real
author did sign. Bounded so the module stays well under a minute.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import shutil
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from core.apply import apply, local_write
from core.change import Change, Envelope, parse, parse_head
from core.errors import BadSignature, SyncError
from core.hlc import Timestamp
from core.merkle import Seal
from core.record import RecordState
from runtime import intake, wire
from store.store import Store
from tests.support.pki import PKI, build_pki
from yipanqi.v2 import federation_pb2 as fpb

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EPOCH = 1_750_000_000_000

# -- genuine changes -----------------------------------------------------------------


def _history(origin: str, records: list[tuple[str, str]], first_seq: int = 1) -> list[Change]:
    """A node's own writes: a create and two updates per record, sequenced like write_local does."""
    out: list[Change] = []
    states: dict[str, RecordState | None] = {}
    seq = first_seq
    for step in range(3):
        for i, (household, residence) in enumerate(records):
            rid = str(uuid.UUID(int=zlib.crc32(origin.encode()) << 64 | i))
            if step == 0:
                values: dict[str, object] = {"name": "张三", "sex": "M", "household_province": household,
                                             "residence_province": residence, "children": 0}
                op = "create"
            else:
                values = {"children": step, "residence_city": f"城{step}"}
                op = "update"
            change = local_write(states.get(rid), kind="person", record_id=rid, values=values, node=origin,
                                 seq=seq, at=Timestamp(EPOCH + seq * 1000, 0, origin), op=op,
                                 operator=f"operator-{origin[-2:]}-admin")
            states[rid] = change.state
            out.append(change)
            seq += 1
    return out


CHANGES_44 = _history("province-44", [("45", "44"), ("44", "11"), ("44", "44")])
CHANGES_45 = _history("province-45", [("45", "44"), ("31", "45")])
BODIES_44 = [c.to_body() for c in CHANGES_44]
BODIES = BODIES_44 + [c.to_body() for c in CHANGES_45]


class Keys:
    def __init__(self, pki: PKI, genuine: list[Envelope], signed: set[tuple[str, bytes]]) -> None:
        self.pki = pki
        self.genuine = genuine  # every genuine change, sealed by its author (two batches)
        self.signed = signed  # (author, body) pairs that author really signed

    def __repr__(self) -> str:  # hypothesis prints fixtures in failure reports
        return "Keys(...)"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    pki = build_pki(tmp_path_factory.mktemp("pki"))
    genuine: list[Envelope] = []
    signed: set[tuple[str, bytes]] = set()
    for author, changes in (("province-44", CHANGES_44), ("province-45", CHANGES_45)):
        bodies = [c.to_body() for c in changes]
        genuine += [Envelope(b, s) for b, s in zip(bodies, pki.signer(author).seal_batch(bodies))]
        signed |= {(author, b) for b in bodies}
    return Keys(pki, genuine, signed)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Migrated empty stores (a province node and the national hub), copied per example."""
    d = tmp_path_factory.mktemp("stores")
    out = {}
    for owner, index in (("province-45", False), ("hub-national", True)):
        path = d / f"{owner}.db"
        Store.open(f"sqlite:///{path}", owner=owner, index_routes=index).close()
        out[owner] = path
    yield out


# -- strategies ------------------------------------------------------------------------

# (hypothesis favours the first elements of sampled_from and one_of: the nastiest come first)
NASTY_TEXT = st.sampled_from(["\ud800", "a\udfff", "\x00", "", "\u2028", "44", "province-44", "x" * 300,
                              "person", "create", "\\u0000", "中华人民共和国"])
NASTY_INT = st.sampled_from([2**63, 10**30, -1, 2**63 - 1, 0, 1, 2**31, 2**32, 2**64, -(2**63) - 1, 10**400])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), NASTY_INT, st.text(max_size=20), NASTY_TEXT,
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=8), NASTY_TEXT), inner, max_size=4)),
    max_leaves=12,
)
VALUES = st.one_of(NASTY_TEXT, NASTY_INT, JSON)  # the edge cases often, anything else too


def _dump(obj: object, ascii_only: bool) -> bytes:
    # surrogatepass: lone surrogates become (invalid) UTF-8 bytes rather than an error here.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only,
                      allow_nan=True).encode("utf-8", "surrogatepass")


def _spots(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every position in a decoded body: the root, each container and each leaf."""
    yield path
    if isinstance(node, dict):
        for k in sorted(node):
            yield from _spots(node[k], path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _spots(v, path + (i,))


@st.composite
def structural(draw: st.DrawFn, body: bytes) -> bytes:
    """Change one spot anywhere in the decoded body (chosen uniformly), then re-encode."""
    obj = json.loads(body)
    # Field values first (hypothesis favours early elements), where anything goes on the wire
    # and the most reaches the store; then every other spot.
    spots = sorted(list(_spots(obj))[1:], key=lambda p: (not (p[:2] == ("state", "fields") and len(p) == 5
                                                              and p[-1] == 0), len(p) < 3))
    path = draw(st.sampled_from(spots))
    parent: Any = obj
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "wrap", "retype"]))
    if action == "replace":
        parent[key] = draw(VALUES)
    elif action == "delete":
        del parent[key]
    elif action == "add":
        if isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=8), NASTY_TEXT))] = draw(VALUES)
        else:
            parent.insert(key, draw(VALUES))
    elif action == "wrap":
        parent[key] = [parent[key]]
    else:
        value = parent[key]
        parent[key] = draw(st.sampled_from([str(value), json.dumps(value), None, {}, [], True, 1]))
    # Mostly ASCII-escaped, as that is how lone surrogates and NULs can travel in valid UTF-8.
    return _dump(obj, draw(st.sampled_from([True, True, False])))


@st.composite
def bytewise(draw: st.DrawFn, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif how == "truncate":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:i + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def reshaped(draw: st.DrawFn, bodies: list[bytes] = BODIES) -> bytes:
    """A genuine body with 1..3 structural changes: still JSON, so it gets past decoding."""
    body = draw(st.sampled_from(bodies))
    for _ in range(draw(st.integers(1, 3))):
        body = draw(structural(body))
        try:
            json.loads(body)
        except ValueError:
            break  # a lone surrogate made it invalid UTF-8: nothing further to restructure
    return body


def mutated() -> st.SearchStrategy[bytes]:
    """Genuine bodies reshaped, damaged byte-wise, or both."""
    return st.one_of(reshaped(), st.sampled_from(BODIES).flatmap(bytewise),
                     reshaped().flatmap(bytewise))


def _no_crash(fn, body: bytes):  # type: ignore[no-untyped-def]
    try:
        return fn(body)
    except SyncError:
        return None


# -- parse / parse_head ------------------------------------------------------------------


@FAST
@given(st.one_of(st.binary(max_size=600), st.builds(lambda o: _dump(o, False), JSON)))
def test_parse_arbitrary_bytes_returns_or_raises_sync_error(body: bytes) -> None:
    _no_crash(parse, body)
    _no_crash(parse_head, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_parse_mutated_bodies_returns_or_raises_sync_error(body: bytes) -> None:
    change = _no_crash(parse, body)
    head = _no_crash(parse_head, body)
    if change is not None and head is not None:
        # Regional hubs (head only) and the national hub (full parse) agree on who wrote it, and
        # a regional hub never routes it to fewer provinces than the full state involves. (The
        # head also counts versions the full parse drops as dominated, so it may route wider.)
        assert (head.origin, head.seq, head.kind, head.record_id, head.at, head.op, head.prior) == \
            (change.origin, change.seq, change.kind, change.record_id, change.at, change.op, change.prior)
        try:
            routes = change.routes
        except SyncError:
            routes = None  # routing fields are judged (and refused) by intake
        if routes is not None:
            assert head.routes >= routes, body


def test_genuine_bodies_parse_back_exactly() -> None:
    for change, body in zip(CHANGES_44 + CHANGES_45, BODIES):
        assert parse(body) == change
        assert parse(body).to_body() == body


# -- wire.envelope ------------------------------------------------------------------------------

SEALS = st.builds(
    fpb.Seal,
    key_id=st.one_of(st.text(max_size=80), NASTY_TEXT.filter(lambda t: "\ud800" not in t and "\udfff" not in t)),
    signature=st.one_of(st.binary(max_size=80), st.binary(min_size=64, max_size=64)),
    index=st.integers(0, 2**32 - 1),
    size=st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 4)),
    proof=st.lists(st.one_of(st.binary(max_size=40), st.binary(min_size=32, max_size=32)), max_size=70),
)


@FAST
@given(st.one_of(st.binary(max_size=300), mutated(), st.just(b"x" * (256 * 1024 + 1))),
       st.one_of(st.none(), SEALS))
def test_wire_envelope_returns_an_envelope_or_malformed(body: bytes, seal: fpb.Seal | None) -> None:
    msg = fpb.SignedChange(body=body) if seal is None else fpb.SignedChange(body=body, seal=seal)
    msg = fpb.SignedChange.FromString(msg.SerializeToString())  # exactly as received off the wire
    try:
        env = wire.envelope(msg)
    except SyncError as err:
        assert type(err).__name__ == "Malformed"
        return
    assert env.body == body and len(env.seal.signature) == 64 and 0 <= env.seal.index < env.seal.size
    assert env.seal.size < 2**31  # storable in the log's 32-bit seal columns on every backend
    assert wire.signed_change(env) == msg  # and it round-trips


# -- intake.check -----------------------------------------------------------------------------

SIGNERS = ("province-44", "province-45", "province-11", "hub-pearl")


@st.composite
def hostile(draw: st.DrawFn, keys: Keys, *,
            author_signs_mutations: bool) -> tuple[list[Envelope], set[tuple[str, bytes]]]:
    """A batch as a province-44 or hub peer might send it: genuine changes, forgeries of
    every kind, and (optionally) mutated bodies that province-44 really signed."""
    pki = keys.pki
    out: list[Envelope] = []
    also_signed: set[tuple[str, bytes]] = set()  # (signer, body) for the bodies signed here
    genuine = keys.genuine
    for _ in range(draw(st.integers(1, 8))):
        # (sampled_from favours early entries: what reaches furthest into the store comes first)
        kind = draw(st.sampled_from(["signed-mutation", "genuine", "altered-body", "wrong-signer", "other-seal",
                                     "bad-sig", "resealed", "foreign-ca", "reindexed", "garbage"]))
        base = draw(st.sampled_from(genuine))
        if kind == "genuine":
            out.append(base)
        elif kind == "altered-body":
            out.append(Envelope(draw(mutated()), base.seal))
        elif kind == "other-seal":
            out.append(Envelope(base.body, draw(st.sampled_from(genuine)).seal))
        elif kind == "bad-sig":
            sig = bytearray(base.seal.signature)
            sig[draw(st.integers(0, 63))] ^= draw(st.integers(1, 255))
            s = base.seal
            out.append(Envelope(base.body, Seal(s.key_id, bytes(sig), s.index, s.size, s.proof)))
        elif kind == "resealed":  # somebody else's valid signature over a genuine body
            signer = pki.signer(draw(st.sampled_from(SIGNERS)))
            (seal,) = signer.seal_batch([base.body])
            out.append(Envelope(base.body, seal))
            also_signed.add((signer.identity, base.body))
        elif kind == "foreign-ca":
            body = draw(st.one_of(st.just(base.body), mutated()))
            (seal,) = pki.foreign_signer().seal_batch([body])
            out.append(Envelope(body, seal))
        elif kind == "wrong-signer":  # province-45 signs a mutation
            body = draw(mutated())
            (seal,) = pki.signer("province-45").seal_batch([body])
            out.append(Envelope(body, seal))
            also_signed.add(("province-45", body))
        elif kind == "signed-mutation" and author_signs_mutations:
            body = draw(st.one_of(reshaped(BODIES_44), reshaped(BODIES_44), mutated()))
            (seal,) = pki.signer("province-44").seal_batch([body])
            out.append(Envelope(body, seal))
            also_signed.add(("province-44", body))
        elif kind == "reindexed":  # a locator changed: only harmless where the merkle shape allows it
            s = base.seal
            out.append(Envelope(base.body, Seal(s.key_id, s.signature, draw(st.integers(0, s.size)),
                                                draw(st.integers(1, s.size + 1)), s.proof)))
        else:
            out.append(Envelope(draw(st.binary(max_size=200)), base.seal))
    return out, also_signed


@SLOW
@given(st.data())
def test_intake_check_never_raises_and_accepts_nothing_forged(keys: Keys, data: st.DataObject) -> None:
    envelopes, also = data.draw(hostile(keys, author_signs_mutations=True))
    peer = data.draw(st.sampled_from(["province-44", "hub-pearl"]))
    for_province = data.draw(st.sampled_from([None, "45", "11"]))
    full = data.draw(st.booleans())
    try:
        accepted, refused = intake.check_v1(envelopes, keys.pki.verifier(), peer=peer,
                                         peer_may_forward=peer.startswith("hub-"), for_province=for_province,
                                         full=full)
    except intake.BatchRefused:
        # The one refusal of a whole batch (runtime.replica stores it as one entry): more bad signatures
        # than any honest sender makes, each an Ed25519 verify.
        bad = 0
        for env in envelopes:
            try:
                keys.pki.verifier().verify(env.body, env.seal)
            except BadSignature:
                bad += 1
            except SyncError:
                pass
        assert bad > intake.MAX_BAD_SIGNATURES
        return
    assert len(accepted) + len(refused) == len(envelopes)
    signed = keys.signed | also
    for a in accepted:
        # Accepted means: exactly these bytes were signed by the change's own origin ...
        assert (a.change.origin, a.envelope.body) in signed, a.envelope.body
        # ... a province node pushes only its own changes, a node takes only what is routed to it ...
        if not peer.startswith("hub-"):
            assert a.change.origin == peer
        if for_province is not None:
            assert for_province in a.change.routes
        # ... and the author is involved in the record.
        assert a.change.origin.removeprefix("province-") in a.change.routes
    for r in refused:
        assert r.category in intake.CATEGORIES and r.reason.startswith(f"{r.category}: "), r.reason
    # Every genuine change, pushed by its author or forwarded by a hub, is accepted.
    for env in envelopes:
        if env in keys.genuine:
            change = parse(env.body)
            if ((peer.startswith("hub-") or change.origin == peer)
                    and (for_province is None or for_province in change.routes)):
                assert any(a.envelope == env for a in accepted), f"genuine change refused: {refused}"


# -- Store.ingest ------------------------------------------------------------------------------


def _reference(batches: list[list[Any]]) -> tuple[set[bytes], dict[tuple[str, str], RecordState]]:
    """Every distinct body is kept once (later equal bytes are duplicates; other bytes under one
    (origin, seq) are equivocation, kept too, as a concurrent write); records are the merge of
    every kept change."""
    kept: set[bytes] = set()
    states: dict[tuple[str, str], RecordState] = {}
    for accepted in batches:
        for a in accepted:
            ch = a.change
            digest = hashlib.sha256(a.envelope.body).digest()
            if digest in kept:
                continue
            kept.add(digest)
            if isinstance(ch, Change):
                rk = (ch.kind, ch.record_id)
                states[rk] = apply(states.get(rk), ch).state
    return kept, states


@SLOW
@given(st.data())
def test_store_ingest_of_checked_batches_never_raises(keys: Keys, template: dict[str, Path],
                                                      data: st.DataObject) -> None:
    owner = data.draw(st.sampled_from(["province-45", "hub-national"]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store.db"
        shutil.copy(template[owner], path)
        store = Store.open(f"sqlite:///{path}", owner=owner, index_routes=owner.startswith("hub-"))
        try:
            batches = []
            checked = 0  # batches not refused whole
            for n in range(data.draw(st.integers(1, 3))):
                envelopes, _ = data.draw(hostile(keys, author_signs_mutations=True))
                # The genuine changes always come too, in a random order among the rest.
                order = data.draw(st.permutations(envelopes + keys.genuine))
                for_province = "45" if owner == "province-45" else None
                try:
                    accepted, refused = intake.check(order, keys.pki.verifier(), peer="hub-pearl",
                                                     peer_may_forward=True, for_province=for_province)
                except intake.BatchRefused as err:  # refused whole, in one entry, as runtime.replica does
                    checked -= 1  # (a peer sending this many bad signatures is itself bad: nothing in it counts)
                    accepted = []
                    refused = [dataclasses.replace(intake.unreadable(order[0].body, str(err), "hub-pearl"),
                                                   count=len(order))]
                checked += 1
                result = store.ingest(accepted, refused, via="hub-pearl", now_ms=EPOCH + 10**9,
                                      cursor=("in:hub-pearl", n + 1))
                assert result.applied + result.duplicates + result.quarantined == len(order)
                batches.append(accepted)
                if any(a.envelope not in keys.genuine for a in accepted):
                    event("ingested a signed mutation")  # (--hypothesis-show-statistics)
            kept, states = _reference(batches)
            # The log holds exactly every distinct body, once ...
            entries = store.read_log(0, limit=10_000)[0]
            assert sorted(hashlib.sha256(e.body).digest() for e in entries) == sorted(kept)
            logged = {(e.origin, e.seq): e for e in entries}
            # ... every genuine change routed here is in it (when some batch it came in was checked) ...
            for env in keys.genuine if checked else ():
                ch = parse(env.body)
                if owner == "hub-national" or "45" in ch.routes:
                    assert (ch.origin, ch.seq) in logged
            # ... and the records are exactly the reference merge.
            stored = {(r.kind, r.record_id): r for r in store.iter_records("person", include_deleted=True)}
            assert stored == states
            assert store.cursor("in:hub-pearl") == len(batches)
        finally:
            store.close()


def test_mutations_reach_every_stage(keys: Keys) -> None:
    """Sanity for the fuzzers above: the generator does produce mutated changes that pass intake
    (so the store fuzzing sees more than the genuine changes)."""
    from hypothesis import find

    def accepted_mutation(batch: tuple[list[Envelope], set[bytes]]) -> bool:
        envelopes, also = batch
        acc, _ = intake.check_v1(envelopes, keys.pki.verifier(), peer="province-44", peer_may_forward=False)
        return any(("province-44", a.envelope.body) in also for a in acc)

    find(hostile(keys, author_signs_mutations=True), accepted_mutation, settings=settings(max_examples=2000,
                                                                                          deadline=None))


# -- signed edge cases on every backend --------------------------------------------------------


def _edit(body: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    obj = json.loads(body)
    change(obj)
    return _dump(obj, True)


def _field(name: str, value: object):  # type: ignore[no-untyped-def]
    return lambda o: o["state"]["fields"].__setitem__(name, [[value, 0]])


# Bodies province-44 signs itself: all authorised, all well-formed JSON. Each must be stored
# or quarantined; none may fail the batch (the sender would retry it forever).
EDGE_CASES = {
    "nul in a projected date": _field("moved_in_on", "2020\x00"),
    "nul in an unknown field": _field("x_note", "a\x00b"),
    "lone surrogate in a value": _field("name", "\ud800"),
    "lone surrogate in a field name": lambda o: o["state"]["fields"].__setitem__("\udfff", [[1, 0]]),
    "lone surrogate in a clock": lambda o: o["state"]["stamps"][0][0].__setitem__("province-\ud800", 1),
    "wall time past 64 bits": lambda o: o.__setitem__("at", [2**63, 0, "province-44"]),
    "stamp wall time past 64 bits": lambda o: o["state"]["stamps"][0].__setitem__(1, [2**64, 0, "province-44"]),
    "prior not a province code": lambda o: o.__setitem__("prior", ["44", "123"]),
    "prior with a comma": lambda o: o.__setitem__("prior", ["44", "45,11"]),
    "huge clock count": lambda o: o["state"]["stamps"][0][0].__setitem__("province-44", 10**30),
    "huge unknown value": _field("x_blob", "x" * 100_000),
    "nested unknown value": _field("x_tree", {"a": [{"b": [1, None, True, "c"]}]}),
    "newer protocol": lambda o: o.update(v=2, x_new={"k": [1]}),
}


@pytest.mark.parametrize("owner", ["hub-national", "hub-pearl", "province-45"])
def test_signed_edge_cases_are_stored_or_quarantined_on_every_backend(keys: Keys, db_url: str, owner: str) -> None:
    from certs.revocation import RevocationList
    from runtime.replica import Replica

    s44 = keys.pki.signer("province-44")
    base = CHANGES_44[0]  # a record of household 45, residence 44
    bodies = {name: _edit(base.to_body(), edit) for name, edit in EDGE_CASES.items()}
    # Unique (origin, seq) each, so every case is judged on its own and not as equivocation.
    bodies = {name: _edit(b, lambda o, i=i: o.__setitem__("seq", 1000 + i)) if b"seq" in b else b
              for i, (name, b) in enumerate(bodies.items())}
    envelopes = [Envelope(b, s) for b, s in zip(bodies.values(), s44.seal_batch(list(bodies.values())))]
    # A genuine 2-change batch whose last change carries an index/size that verifies (size is
    # not signed) but does not fit the log's 32-bit columns.
    b0, b1 = CHANGES_44[1].to_body(), CHANGES_44[2].to_body()
    _, s1 = s44.seal_batch([b0, b1])
    moved = Envelope(b1, Seal(s1.key_id, s1.signature, 2**31, 2**31 + 1, s1.proof))
    assert keys.pki.verifier().verify(moved.body, moved.seal) == "province-44"
    msgs = [wire.signed_change(e) for e in envelopes] + [wire.signed_change(e) for e in keys.genuine]

    hub = owner.startswith("hub-")
    store = Store.open(db_url, owner=owner, index_routes=hub, hold_records=owner != "hub-pearl")
    try:
        replica = Replica(owner, store, keys.pki.keyring(), RevocationList(None))
        batch = fpb.Batch(cursor=1, changes=msgs)
        result = replica.ingest_batch(batch, via="hub-pearl" if owner == "province-45" else "province-44",
                                   peer_may_forward=owner == "province-45",
                                   for_province="45" if owner == "province-45" else None, cursor_name="in")
        assert result.applied + result.duplicates + result.quarantined == len(msgs)
        logged = {(e.origin, e.seq): e for e in store.read_log(0, limit=10_000)[0]}
        for env in keys.genuine:
            ch = parse(env.body)
            if ch.origin == "province-44" or owner == "province-45":
                if owner != "province-45" or "45" in ch.routes:
                    assert (ch.origin, ch.seq) in logged
        assert store.cursor("in") == 1
        # What was stored reads back as it was judged (regional hubs check only the head; the state
        # is checked where it is merged), and records stay readable.
        for e in logged.values():
            assert (parse if store.hold_records else parse_head)(e.body) is not None
        list(store.iter_records("person", include_deleted=True))
        # A seal that does not even decode refuses its whole batch (runtime.replica), in one entry.
        label = {"reason": "malformed"}  # the metric is labelled by the error class's category
        before = REGISTRY.get_sample_value("yipanqi_quarantined_total", label) or 0.0
        result = replica.ingest_batch(fpb.Batch(cursor=2, changes=[wire.signed_change(moved), msgs[-1]]),
                                   via="hub-pearl" if owner == "province-45" else "province-44",
                                   peer_may_forward=owner == "province-45",
                                   for_province="45" if owner == "province-45" else None, cursor_name="in")
        assert (result.applied, result.duplicates, result.quarantined) == (0, 0, 2)
        assert REGISTRY.get_sample_value("yipanqi_quarantined_total", label) == before + 2
        assert store.cursor("in") == 2
        reasons = [q.reason for q in store.quarantined()]
        assert any(r.startswith("malformed: batch of 2 changes refused whole: a change's seal or body does not "
                                "decode (seal.size") for r in reasons), reasons
    finally:
        store.close()
