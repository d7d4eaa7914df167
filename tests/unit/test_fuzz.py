"""Fuzzing the boundary where bytes from peers enter a process.

v2 (the wire): everything a peer sends goes through ``runtime.wire.envelope`` (the protobuf
seal, openings and relay bundle), ``runtime.intake.check`` (= ``runtime.deltaintake``: the
delta's bytes and openings, signature, origin, routes and values, relayed deltas included) and
``store.Store.ingest`` (one transaction per batch; core.graph decides). A peer must not be able
to make any of them raise anything but a ``core.errors.SyncError`` (which becomes a quarantine
entry or a clear gRPC status); intake accepts nothing forged (exactly the bytes the delta's own
origin signed, every value opening its commitment) and every genuine delta; and ingest must not
raise at all on what intake let through: a crash there aborts the whole batch every time it is
retried.

Inputs: arbitrary bytes; genuine deltas (written as core.graph writes them) mutated byte-wise
(flips, truncation, insertion) and structurally (any JSON value, at any depth, replaced, removed,
added or wrapped, including floats, huge integers, NULs and lone surrogates); openings that do
not match their commitments or leave values out; arbitrary ``SignedChange`` protobufs; bad,
foreign and misplaced seals; relay bundles mixing genuine history with all of that; and batches
mixing genuine deltas with forgeries and with mutated bodies that the real author did sign.

v1: ``core.change.parse``/``parse_head`` and ``runtime.intake.check_v1`` (the v1 reader, kept for
pre-v2 stores and the v1 core) are fuzzed as before. Bounded so the module stays well under a
minute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
import hashlib
import json
import random
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

from core.apply import local_write
from core.change import Change, Envelope, parse, parse_head
from core.delta import Delta
from core.delta import parse as parse_delta
from core.graph import RecordGraph
from core.kinds import graph_rules
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
# A v2 delta body, for the wire fuzzing below (the v2 section builds its genuine deltas itself).
DELTA_BODIES_PLAIN = [b'{"accepts":[],"at":[1750000001000,0,"province-44"],"chain":{},"deps":[],"epoch":0,'
                      b'"id":"k","kind":"person","merges":[],"op":"create","operator":null,"origin":"province-44",'
                      b'"routes":["44"],"seq":1,"set":{},"v":2}']
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


BODIES_ANY = st.one_of(st.binary(max_size=300), mutated(), st.sampled_from(DELTA_BODIES_PLAIN),
                      st.just(b"x" * (256 * 1024 + 1)))
OPENINGS_ANY = st.one_of(st.just(b""), st.binary(max_size=60), st.just(b"x" * (64 * 1024 + 1)))


def _signed_changes(nested: int) -> st.SearchStrategy[fpb.SignedChange]:
    relayed = st.lists(_signed_changes(nested - 1), max_size=2) if nested else st.just([])
    return st.builds(lambda body, seal, openings, relayed: fpb.SignedChange(body=body, seal=seal, openings=openings,
                                                                            relayed=relayed),
                     BODIES_ANY, st.one_of(st.none(), SEALS), OPENINGS_ANY, relayed)


@FAST
@given(_signed_changes(2))
def test_wire_envelope_returns_an_envelope_or_malformed(msg: fpb.SignedChange) -> None:
    msg = fpb.SignedChange.FromString(msg.SerializeToString())  # exactly as received off the wire
    try:
        env = wire.envelope(msg)
    except SyncError as err:
        assert type(err).__name__ == "Malformed"
        return
    for e, m in [(env, msg)] + list(zip(env.relayed, msg.relayed)):
        assert e.body == m.body and len(e.seal.signature) == 64 and 0 <= e.seal.index < e.seal.size
        assert e.seal.size < 2**31  # storable in the log's 32-bit seal columns on every backend
        assert e.openings == (m.openings or b"{}")  # none sent: no values
    assert not any(r.relayed for r in env.relayed)  # a relayed delta carries no relays of its own
    if msg.openings != b"{}" and not any(r.openings == b"{}" for r in msg.relayed):
        assert wire.signed_change(env) == msg  # and it round-trips


# -- intake.check_v1 (v1 whole-state changes) --------------------------------------------------

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


def test_mutations_reach_every_stage(keys: Keys) -> None:
    """Sanity for the v1 fuzzer above: the generator does produce mutated changes that pass the
    v1 intake (so it sees more than the genuine changes)."""
    from hypothesis import find

    def accepted_mutation(batch: tuple[list[Envelope], set[bytes]]) -> bool:
        envelopes, also = batch
        acc, _ = intake.check_v1(envelopes, keys.pki.verifier(), peer="province-44", peer_may_forward=False)
        return any(("province-44", a.envelope.body) in also for a in acc)

    find(hostile(keys, author_signs_mutations=True), accepted_mutation, settings=settings(max_examples=2000,
                                                                                          deadline=None))


# == v2: signed deltas (core.delta, runtime.intake.check = runtime.deltaintake) =====================

# Genuine deltas, written the way a node writes them (core.graph.RecordGraph.write, random salts):
# per record a create and two edits; the third record of 44 moves to 11, so its last delta newly
# involves 11 and carries the record's history to it (core.relay), as Store.write_local_batch does.


def _delta_history(origin: str, records: list[tuple[str, str]],
                   moves: dict[int, str]) -> list[tuple[str, Delta, bytes, list[tuple[str, frozenset[str]]]]]:
    rng = random.Random(origin)
    graphs: dict[str, RecordGraph] = {}
    out = []
    seq = 0
    for step in range(3):
        for i, (household, residence) in enumerate(records):
            rid = str(uuid.UUID(int=zlib.crc32(origin.encode()) << 64 | i))
            graph = graphs.setdefault(rid, RecordGraph("person", rid, graph_rules("person")))
            if step == 0:
                op, values = "create", {"name": "张三", "sex": "M", "household_province": household,
                                        "residence_province": residence, "children": 0}
            elif step == 2 and i in moves:
                op, values = "update", {"residence_province": moves[i]}
            else:
                op, values = "update", {"children": step, "residence_city": f"城{step}"}
            seq += 1
            before = graph.view().involved if graph.held else frozenset()
            did, delta, body = graph.write(values, origin=origin, epoch=0, seq=seq,
                                           at=Timestamp(EPOCH + seq * 1000, 0, origin), op=op,
                                           operator=f"operator-{origin[-2:]}-admin", now_ms=EPOCH + seq * 1000,
                                           salt=lambda: rng.randbytes(16))
            newly = graph.view().involved - before - {origin[-2:]} if before else frozenset()
            out.append((did, delta, body, [(d, names) for d, _, names in graph.relay() if d != did] if newly else []))
    return out


DELTAS_44 = _delta_history("province-44", [("45", "44"), ("44", "11"), ("44", "44")], moves={2: "11"})
DELTAS_45 = _delta_history("province-45", [("45", "44"), ("31", "45")], moves={})
DELTA_BODIES_44 = [body for _, _, body, _ in DELTAS_44]
DELTA_BODIES = DELTA_BODIES_44 + [body for _, _, body, _ in DELTAS_45]
OPENINGS = [delta.openings() for _, delta, _, _ in DELTAS_44 + DELTAS_45]


class DeltaKeys:
    def __init__(self, pki: PKI) -> None:
        self.pki = pki
        self.genuine: list[Envelope] = []  # each genuine delta as its author sends it (with its relay bundle)
        self.relayable: list[Envelope] = []  # genuine deltas as a bundle carries them (some values left unopened)
        self.deltas: dict[bytes, Delta] = {}  # genuine body -> the delta its author wrote
        self.signed: set[tuple[str, bytes]] = set()  # (signer, body) pairs really signed
        for author, history in (("province-44", DELTAS_44), ("province-45", DELTAS_45)):
            seals = pki.sealer(author)([body for _, _, body, _ in history])
            sealed = {did: (body, seal, delta) for (did, delta, body, _), seal in zip(history, seals)}
            for did, delta, body, relayed in history:
                bundle = tuple(Envelope(sealed[d][0], sealed[d][1], sealed[d][2].openings(sorted(names)))
                               for d, names in relayed)
                self.genuine.append(Envelope(body, sealed[did][1], delta.openings(), bundle))
                self.relayable += bundle
                self.deltas[body] = delta
                self.signed.add((author, body))
        assert any(e.relayed for e in self.genuine)  # the move carries history
        assert any(len(r.openings) < len(self.deltas[r.body].openings()) for r in self.relayable)  # partly opened

    def __repr__(self) -> str:
        return "DeltaKeys(...)"


@pytest.fixture(scope="module")
def dkeys(keys: Keys) -> DeltaKeys:
    return DeltaKeys(keys.pki)


def mutated_delta() -> st.SearchStrategy[bytes]:
    """Genuine delta bodies reshaped, damaged byte-wise, or both."""
    return st.one_of(reshaped(DELTA_BODIES), st.sampled_from(DELTA_BODIES).flatmap(bytewise),
                     reshaped(DELTA_BODIES).flatmap(bytewise))


def mutated_openings(own: bytes | None = None) -> st.SearchStrategy[bytes]:
    """Openings that do not match what was committed: a value, salt or name changed, a field left
    out or added (mostly of the delta's ``own`` openings), anything anywhere, or the bytes damaged."""
    return st.one_of(*([reshaped([own])] if own is not None else []), reshaped(OPENINGS),
                     st.sampled_from(OPENINGS).flatmap(bytewise), st.builds(lambda o: _dump(o, True), JSON))


@st.composite
def hostile_deltas(draw: st.DrawFn, keys: DeltaKeys, *, nested: bool = True) -> tuple[list[Envelope], set]:
    """A batch as a province-44 or hub peer might send it: genuine deltas, forged and mutated
    bodies, openings that do not match their commitments, bad seals, mutated bodies province-44
    really signed, and relay bundles mixing genuine deltas with all of that."""
    pki = keys.pki
    out: list[Envelope] = []
    also: set[tuple[str, bytes]] = set()
    for _ in range(draw(st.integers(1, 6 if nested else 3))):
        kind = draw(st.sampled_from(["signed-mutation", "genuine", "junk-relay", "bad-openings", "withheld",
                                     "altered-body",
                                     "wrong-signer", "other-seal", "bad-sig", "resealed", "foreign-ca",
                                     "reindexed", "garbage"]))
        base = draw(st.sampled_from(keys.genuine))
        if kind == "genuine":
            out.append(base)
        elif kind == "junk-relay" and nested:  # a carrier (genuine or not) whose bundle mixes history and junk
            carrier = draw(hostile_deltas(keys, nested=False))
            bundle, more = draw(hostile_deltas(keys, nested=False))
            bundle = [replace(e, relayed=()) for e in bundle] + draw(st.lists(st.sampled_from(keys.relayable),
                                                                              max_size=3))
            also |= carrier[1] | more
            out.append(replace(carrier[0][0], relayed=tuple(draw(st.permutations(bundle)))))
        elif kind == "withheld":  # sent on its own with values left out, as only a relay bundle may
            delta = keys.deltas[base.body]
            names = sorted(delta.values)
            out.append(replace(base, openings=delta.openings(draw(st.lists(st.sampled_from(names), unique=True,
                                                                             max_size=len(names) - 1)))))
        elif kind == "bad-openings":
            out.append(replace(base, openings=draw(mutated_openings(base.openings))))
        elif kind == "altered-body":
            out.append(replace(base, body=draw(mutated_delta())))
        elif kind == "other-seal":
            out.append(replace(base, seal=draw(st.sampled_from(keys.genuine)).seal))
        elif kind == "bad-sig":
            sig = bytearray(base.seal.signature)
            sig[draw(st.integers(0, 63))] ^= draw(st.integers(1, 255))
            out.append(replace(base, seal=replace(base.seal, signature=bytes(sig))))
        elif kind == "resealed":  # somebody else's valid signature over a genuine body
            signer = pki.signer(draw(st.sampled_from(SIGNERS)))
            (seal,) = signer.seal_batch([base.body])
            out.append(replace(base, seal=seal))
            also.add((signer.identity, base.body))
        elif kind == "foreign-ca":
            body = draw(st.one_of(st.just(base.body), mutated_delta()))
            (seal,) = pki.foreign_signer().seal_batch([body])
            out.append(Envelope(body, seal, base.openings))
        elif kind in ("wrong-signer", "signed-mutation"):  # 45 or 44 signs a mutation of 44's delta
            signer = pki.signer("province-45" if kind == "wrong-signer" else "province-44")
            i = draw(st.integers(0, len(DELTA_BODIES_44) - 1))
            body = draw(st.one_of(reshaped([DELTA_BODIES_44[i]]), mutated_delta()))
            (seal,) = signer.seal_batch([body])
            openings = draw(st.one_of(st.just(OPENINGS[i]), mutated_openings(OPENINGS[i])))  # mostly its own
            out.append(Envelope(body, seal, openings))
            also.add((signer.identity, body))
        elif kind == "reindexed":  # a locator changed: only harmless where the merkle shape allows it
            s = base.seal
            out.append(replace(base, seal=Seal(s.key_id, s.signature, draw(st.integers(0, s.size)),
                                               draw(st.integers(1, s.size + 1)), s.proof)))
        else:
            out.append(Envelope(draw(st.binary(max_size=200)), base.seal, draw(st.binary(max_size=40))))
    return out, also


def _bad_signatures(pki: PKI, envelopes: list[Envelope]) -> int:
    bad = 0
    for env in [r for e in envelopes for r in e.relayed] + envelopes:
        try:
            pki.verifier().verify(env.body, env.seal)
        except BadSignature:
            bad += 1
        except SyncError:
            pass
    return bad


@FAST
@given(st.data())
def test_delta_intake_never_raises_accepts_nothing_forged_and_every_genuine_delta(dkeys: DeltaKeys,
                                                                                   data: st.DataObject) -> None:
    envelopes, also = data.draw(hostile_deltas(dkeys))
    peer = data.draw(st.sampled_from(["province-44", "hub-pearl"]))
    for_province = data.draw(st.sampled_from([None, "45", "11"]))
    try:
        accepted, refused = intake.check(envelopes, dkeys.pki.verifier(), peer=peer,
                                         peer_may_forward=peer.startswith("hub-"), for_province=for_province)
    except intake.BatchRefused:
        # The one refusal of a whole batch: more bad signatures than any honest sender makes.
        assert _bad_signatures(dkeys.pki, envelopes) > intake.MAX_BAD_SIGNATURES
        return
    # Each delta, relayed ones included, is either accepted or refused, except that the verified
    # history a refused delta relays is dropped with it (history for a carrier not taken).
    taken = {a.envelope.body for a in accepted if not a.relayed}
    dropped = sum(1 + len(e.relayed) for e in envelopes) - len(accepted) - len(refused)
    assert 0 <= dropped <= sum(len(e.relayed) for e in envelopes)  # (a body may come twice: not per carrier)
    refused_bodies = {r.envelope.body for r in refused}
    signed = dkeys.signed | also
    bundled = {(a.envelope.body, a.envelope.seal, a.envelope.openings) for a in accepted if a.relayed}
    for a in accepted:
        body = a.envelope.body
        # Accepted means: exactly these bytes were signed by the delta's own origin ...
        assert (a.signer, body) in signed and a.signer == a.delta.origin, body
        assert a.id == hashlib.sha256(body).hexdigest()
        # ... every value opens its commitment (all of them unless it came in a bundle) ...
        assert parse_delta(body, a.envelope.openings, complete=not a.relayed) == a.delta
        if body in dkeys.deltas:  # ... so a genuine body carries its author's values and no others
            genuine = dkeys.deltas[body].values
            assert a.delta.values.items() <= genuine.items()
            if not a.relayed:
                assert dict(a.delta.values) == dict(genuine)
        if not a.relayed:
            # ... a province node pushes only its own deltas, a node takes only what is routed to it ...
            if not peer.startswith("hub-"):
                assert a.delta.origin == peer
            if for_province is not None:
                assert for_province in a.delta.routes
            # ... and a carrier keeps only the relayed deltas that verified.
            assert all((r.body, r.seal, r.openings) in bundled for r in a.envelope.relayed)
    for r in refused:
        assert r.category in intake.CATEGORIES and r.reason.startswith(f"{r.category}: "), r.reason
        assert not r.envelope.relayed
        # The reason is stored as text on every backend, and logged: it must have a UTF-8 form, no NUL.
        assert "\x00" not in r.reason, r.reason.encode("utf-8", "backslashreplace")
        try:
            r.reason.encode("utf-8")
        except UnicodeEncodeError:
            raise AssertionError(r.reason.encode("utf-8", "backslashreplace")) from None
    # Every genuine delta is accepted: pushed by its author or forwarded by a hub, where it is
    # routed to; anywhere when it comes in the bundle of a delta taken (each relayed delta goes
    # where its writer sent it).
    got = {(a.envelope.body, a.envelope.openings, a.relayed) for a in accepted}
    for env in envelopes:
        for r in env.relayed:
            if env.body not in taken or env.body in refused_bodies:
                continue  # relayed by a delta not taken: dropped with it, genuine or not
            if r in dkeys.relayable or replace(r, relayed=()) in [replace(g, relayed=()) for g in dkeys.genuine]:
                assert (r.body, r.openings, True) in got, f"genuine relayed delta refused: {refused}"
        if replace(env, relayed=()) in [replace(g, relayed=()) for g in dkeys.genuine]:
            delta = dkeys.deltas[env.body]
            if ((peer.startswith("hub-") or delta.origin == peer)
                    and (for_province is None or for_province in delta.routes)):
                assert (env.body, env.openings, False) in got, f"genuine delta refused: {refused}"


def test_delta_mutations_reach_every_stage(dkeys: DeltaKeys) -> None:
    """Sanity for the fuzzers: the generator produces mutated deltas that province-44 signed and
    intake passes, and forged relayed deltas that it refuses while keeping their genuine carrier."""
    from hypothesis import find

    def accepted_mutation(batch: tuple[list[Envelope], set]) -> bool:
        envelopes, also = batch
        try:
            acc, _ = intake.check(envelopes, dkeys.pki.verifier(), peer="province-44", peer_may_forward=False)
        except intake.BatchRefused:
            return False
        return any(("province-44", a.envelope.body) in also and a.envelope.body not in dkeys.deltas for a in acc)

    def junk_dropped_from_a_bundle(batch: tuple[list[Envelope], set]) -> bool:
        envelopes, _ = batch
        try:
            acc, _ = intake.check(envelopes, dkeys.pki.verifier(), peer="hub-pearl", peer_may_forward=True)
        except intake.BatchRefused:
            return False
        return any(not a.relayed and len(a.envelope.relayed) < len(e.relayed)
                   for a in acc for e in envelopes if e.body == a.envelope.body and e.relayed)

    few = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    find(hostile_deltas(dkeys), accepted_mutation, settings=few)
    find(hostile_deltas(dkeys), junk_dropped_from_a_bundle, settings=few)


# -- Store.ingest of what intake passed ----------------------------------------------------------


@SLOW
@given(st.data())
def test_store_ingest_of_checked_batches_never_raises(dkeys: DeltaKeys, template: dict[str, Path],
                                                      data: st.DataObject) -> None:
    """Whatever intake lets through, the store decides without raising (a crash would abort the
    batch on every retry); it logs only bodies intake passed, each once, and records stay readable."""
    owner = data.draw(st.sampled_from(["province-45", "hub-national"]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "store.db"
        shutil.copy(template[owner], path)
        store = Store.open(f"sqlite:///{path}", owner=owner, index_routes=owner.startswith("hub-"))
        try:
            passed: set[bytes] = set()
            for n in range(data.draw(st.integers(1, 3))):
                envelopes, _ = data.draw(hostile_deltas(dkeys))
                # The genuine deltas always come too, in a random order among the rest.
                order = data.draw(st.permutations(envelopes + dkeys.genuine))
                for_province = "45" if owner == "province-45" else None
                try:
                    accepted, refused = intake.check(order, dkeys.pki.verifier(), peer="hub-pearl",
                                                     peer_may_forward=True, for_province=for_province)
                except intake.BatchRefused as err:  # refused whole, in one entry, as runtime.replica does
                    accepted = []
                    refused = [dataclasses.replace(intake.unreadable(order[0].body, str(err), "hub-pearl"),
                                                   count=len(order))]
                result = store.ingest(accepted, refused, via="hub-pearl", now_ms=EPOCH + 10**9,
                                      cursor=("in:hub-pearl", n + 1))
                if accepted:
                    assert result.held + result.duplicates + result.quarantined + result.parked == \
                        len(accepted) + len(refused)
                passed |= {a.envelope.body for a in accepted}
                if any(a.envelope.body not in dkeys.deltas for a in accepted):
                    event("ingested a signed mutation")  # (--hypothesis-show-statistics)
            entries = store.read_log(0, limit=10_000)[0]
            digests = [hashlib.sha256(e.body).digest() for e in entries]
            assert len(digests) == len(set(digests))  # each delta once ...
            assert {e.body for e in entries} <= passed  # ... and only what intake passed
            list(store.iter_records("person", include_deleted=True))  # records stay readable
            assert store.cursor("in:hub-pearl") == n + 1
        finally:
            store.close()


@pytest.mark.parametrize("for_province", ["11", "45"])
def test_a_relay_bundle_a_hub_cut_short_does_not_crash_ingest(dkeys: DeltaKeys, template: dict[str, Path],
                                                             for_province: str) -> None:
    """A hub forwards a genuine move with only the first delta of its bundle (a create whose
    superseded values its author left unopened), and a genuine delta of another record: the
    store decides without raising, and the other delta is held (the batch is not aborted)."""
    (carrier,) = [e for e in dkeys.genuine if e.relayed]
    cut = replace(carrier, relayed=carrier.relayed[:1])
    other = next(e for e in dkeys.genuine if dkeys.deltas[e.body].op == "create" and for_province in
                 dkeys.deltas[e.body].routes and not e.relayed)
    owner = f"province-{for_province}"
    with tempfile.TemporaryDirectory() as d:
        store = Store.open(f"sqlite:///{Path(d) / 'store.db'}", owner=owner)
        try:
            accepted, refused = intake.check([cut, other], dkeys.pki.verifier(), peer="hub-pearl",
                                             peer_may_forward=True, for_province=for_province)
            # Routed to 11, the move and what it relays are taken; not routed to 45, neither is.
            assert any(a.relayed for a in accepted) == (for_province in dkeys.deltas[cut.body].routes)
            store.ingest(accepted, refused, via="hub-pearl", now_ms=EPOCH + 10**9)
            assert hashlib.sha256(other.body).hexdigest() in {hashlib.sha256(e.body).hexdigest()
                                                              for e in store.read_log(0, limit=100)[0]}
            list(store.iter_records("person", include_deleted=True))
        finally:
            store.close()


# -- signed edge cases on every backend --------------------------------------------------------


def _edge(delta: Delta, body=None, openings=None):  # type: ignore[no-untyped-def]
    """(body, openings) of ``delta``, either edited as JSON (an author's own odd bytes)."""
    b, o = json.loads(delta.to_body()), json.loads(delta.openings())
    if body is not None:
        body(b)
    if openings is not None:
        openings(o)
    return _dump(b, True), _dump(o, True)


def _edge_cases() -> dict[str, tuple[bytes, bytes]]:
    """Deltas province-44 signs itself, each a create of its own record at its own sequence, so
    each is judged alone. Each must be held, parked or quarantined; none may fail the batch."""
    def make(i: int, version: int = 2, **values: object) -> Delta:
        fields = {"name": "张三", "sex": "M", "household_province": "45", "residence_province": "44",
                  "_deleted": False, **values}
        origin = "province-44"
        return Delta("person", f"edge-{i}", origin, 0, 1000 + i, Timestamp(EPOCH + i, 0, origin), "create", None,
                     (), (), fields, frozenset({"44", "45"}), {}, version=version)

    salt = make(0).salts["name"]
    cases = {
        "nul in a value": lambda i: _edge(make(i, residence_city="城\x00")),
        "nul in a newer release's field": lambda i: _edge(make(i, 3, x_note="a\x00b")),
        "lone surrogate in a value": lambda i: _edge(make(i), openings=lambda o: o.__setitem__("name", [salt, "\ud800"])),
        "lone surrogate in a field name": lambda i: _edge(make(i), lambda b: b["set"].__setitem__("\udfff", "0" * 64),
                                                          lambda o: o.__setitem__("\udfff", [salt, 1])),
        "wall time past 64 bits": lambda i: _edge(make(i), lambda b: b.__setitem__("at", [2**63, 0, "province-44"])),
        "seq past 63 bits": lambda i: _edge(make(i), lambda b: b.__setitem__("seq", 2**63)),
        "huge value of a newer release's field": lambda i: _edge(make(i, 3, x_blob="x" * 30_000)),
        "nested value": lambda i: _edge(make(i), openings=lambda o: o.__setitem__("name", [salt, {"a": [1]}])),
        "unknown field in a v2 delta": lambda i: _edge(make(i, health_card_no="HC-1")),
        "newer protocol, key and field": lambda i: _edge(make(i, 3, health_card_no="HC-1"),
                                                         lambda b: b.__setitem__("x_new", {"k": [1]})),
        "operator too long": lambda i: _edge(make(i), lambda b: b.__setitem__("operator", "o" * 200)),
        "nul in the record id": lambda i: _edge(make(i), lambda b: b.__setitem__("id", "edge\x00")),
        "routes leave the author out": lambda i: _edge(make(i), lambda b: b.__setitem__("routes", ["45"])),
        "a day and more ahead": lambda i: _edge(make(i), lambda b: b.__setitem__(
            "at", [EPOCH + 400 * 24 * 3600 * 1000, 0, "province-44"])),
        "a create with a dependency": lambda i: _edge(make(i), lambda b: b.__setitem__("deps", ["a" * 64])),
        "a create of another's record": lambda i: _edge(make(i, household_province="11", residence_province="11")),
    }
    return {name: case(i) for i, (name, case) in enumerate(cases.items())}


@pytest.mark.parametrize("owner", ["hub-national", "hub-pearl", "province-45"])
def test_signed_edge_cases_are_stored_or_quarantined_on_every_backend(dkeys: DeltaKeys, db_url: str,
                                                                      owner: str) -> None:
    from certs.revocation import RevocationList
    from runtime.replica import Replica

    s44 = dkeys.pki.signer("province-44")
    cases = _edge_cases()
    bodies = [b for b, _ in cases.values()]
    envelopes = [Envelope(b, s, o) for (b, o), s in zip(cases.values(), s44.seal_batch(bodies))]
    # A genuine 2-delta batch whose last delta carries an index/size that verifies (size is not
    # signed) but does not fit the log's 32-bit columns.
    b0, b1 = DELTA_BODIES_44[1], DELTA_BODIES_44[2]
    _, s1 = s44.seal_batch([b0, b1])
    moved = Envelope(b1, Seal(s1.key_id, s1.signature, 2**31, 2**31 + 1, s1.proof), OPENINGS[2])
    assert dkeys.pki.verifier().verify(moved.body, moved.seal) == "province-44"
    # What an honest peer sends: a hub sends a node only the deltas routed to it (a bundle cut
    # short or sent astray is test_a_relay_bundle_a_hub_cut_short_does_not_crash_ingest's).
    genuine = [e for e in dkeys.genuine if owner != "province-45" or "45" in dkeys.deltas[e.body].routes]
    msgs = [wire.signed_change(e) for e in envelopes + genuine]

    hub = owner.startswith("hub-")
    via = "hub-pearl" if owner == "province-45" else "province-44"
    for_province = "45" if owner == "province-45" else None
    store = Store.open(db_url, owner=owner, index_routes=hub, hold_records=owner != "hub-pearl")
    try:
        replica = Replica(owner, store, dkeys.pki.keyring(), RevocationList(None))
        batch = fpb.Batch(cursor=1, changes=msgs)
        result = replica.ingest_batch(batch, via=via, peer_may_forward=owner == "province-45",
                                      for_province=for_province, cursor_name="in")
        # Every delta sent is counted once (a regional hub keeps relayed ones in their carrier).
        relayed = sum(len(e.relayed) for e in genuine) if store.hold_records else 0
        assert result.held + result.duplicates + result.quarantined + result.parked == len(msgs) + relayed
        logged = {e.body for e in store.read_log(0, limit=10_000)[0]}
        for env in genuine:
            delta = dkeys.deltas[env.body]
            # a node takes what is routed to it from its hub; a hub takes 44's own from 44
            if ("45" in delta.routes) if owner == "province-45" else (delta.origin == "province-44"):
                assert env.body in logged
        assert store.cursor("in") == 1
        # What was stored reads back (the delta with its openings), and records stay readable.
        for e in store.read_log(0, limit=10_000)[0]:
            assert parse_delta(e.body, e.openings) is not None
        list(store.iter_records("person", include_deleted=True))
        # A newer release's delta is kept with its new key and field; a v2 delta's unknown field, a
        # value that is not a scalar or has no UTF-8 form is not.
        kept = {name for name, (b, _) in cases.items() if b in logged}
        assert "newer protocol, key and field" in kept, [q.reason for q in store.quarantined()]
        assert not kept & {"unknown field in a v2 delta", "nested value", "lone surrogate in a value",
                           "lone surrogate in a field name", "seq past 63 bits", "nul in the record id"}
        # A seal that does not even decode refuses its whole batch (runtime.replica), in one entry.
        label = {"reason": "malformed"}  # the metric is labelled by the error class's category
        before = REGISTRY.get_sample_value("yipanqi_quarantined_total", label) or 0.0
        result = replica.ingest_batch(fpb.Batch(cursor=2, changes=[wire.signed_change(moved), msgs[-1]]),
                                      via=via, peer_may_forward=owner == "province-45",
                                      for_province=for_province, cursor_name="in")
        assert (result.held, result.duplicates, result.quarantined) == (0, 0, 2)
        assert REGISTRY.get_sample_value("yipanqi_quarantined_total", label) == before + 2
        assert store.cursor("in") == 2
        reasons = [q.reason for q in store.quarantined()]
        assert any(r.startswith("malformed: batch of 2 changes refused whole: a change's seal or body does not "
                                "decode (seal.size") for r in reasons), reasons
    finally:
        store.close()
