"""Merkle batch trees: shape, proofs, and that proofs do not lie."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.merkle import (
    SIGNED_PREFIX,
    Seal,
    build,
    leaf_hash,
    root_from_proof,
    walk,
    signed_message,
)


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _leaf(b: bytes) -> bytes:
    return _h(b"\x00", b)


def _node(left: bytes, right: bytes) -> bytes:
    return _h(b"\x01", left, right)


def test_leaf_and_single_leaf_root() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    root, proofs = build([b"x"])
    assert root == _leaf(b"x")
    assert proofs == [()]
    assert root_from_proof(b"x", 0, 1, ()) == root


def test_tree_shape_with_odd_node_promotion() -> None:
    a, b, c, d, e = (_leaf(x) for x in (b"a", b"b", b"c", b"d", b"e"))
    # 3 leaves: c is promoted unchanged, not hashed with itself.
    root3, proofs3 = build([b"a", b"b", b"c"])
    assert root3 == _node(_node(a, b), c)
    assert proofs3 == [(b, c), (a, c), (_node(a, b),)]
    # 5 leaves: e is promoted twice.
    root5, proofs5 = build([b"a", b"b", b"c", b"d", b"e"])
    assert root5 == _node(_node(_node(a, b), _node(c, d)), e)
    assert proofs5[4] == (_node(_node(a, b), _node(c, d)),)
    assert proofs5[2] == (d, _node(a, b), e)


def test_duplicating_the_last_leaf_changes_the_root() -> None:
    # The reason for promotion instead of self-pairing.
    assert build([b"a", b"b", b"c"])[0] != build([b"a", b"b", b"c", b"c"])[0]


def test_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError):
        build([])


def test_signed_message() -> None:
    root = bytes(32)
    assert SIGNED_PREFIX == b"yipanqi/batch/v1\n"
    assert signed_message(root) == b"yipanqi/batch/v1\n" + root
    with pytest.raises(ValueError):
        signed_message(b"short")


_batches = st.lists(st.binary(max_size=40), min_size=1, max_size=40, unique=True)


@given(_batches)
def test_every_proof_reproduces_the_root(bodies: list[bytes]) -> None:
    root, proofs = build(bodies)
    assert len(proofs) == len(bodies)
    for i, (body, proof) in enumerate(zip(bodies, proofs)):
        assert root_from_proof(body, i, len(bodies), proof) == root
        assert Seal("k", b"s", i, len(bodies), proof).root_for(body) == root


def _root_or_none(body: bytes, index: int, size: int, proof: tuple[bytes, ...]) -> bytes | None:
    try:
        return root_from_proof(body, index, size, proof)
    except ValueError:
        return None


@given(_batches, st.data())
def test_changed_body_does_not_reproduce_the_root(
    bodies: list[bytes], data: st.DataObject
) -> None:
    root, proofs = build(bodies)
    i = data.draw(st.integers(0, len(bodies) - 1))
    other = data.draw(st.binary(max_size=41).filter(lambda b: b != bodies[i]))
    assert _root_or_none(other, i, len(bodies), proofs[i]) != root


@given(_batches.filter(lambda b: len(b) >= 2), st.data())
def test_wrong_index_does_not_reproduce_the_root(
    bodies: list[bytes], data: st.DataObject
) -> None:
    root, proofs = build(bodies)
    n = len(bodies)
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
    # Body i claimed at index j, with its own proof or with j's proof.
    assert _root_or_none(bodies[i], j, n, proofs[i]) != root
    assert _root_or_none(bodies[i], j, n, proofs[j]) != root


def test_inconsistent_proofs_are_rejected_not_guessed() -> None:
    bodies = [b"a", b"b", b"c"]
    root, proofs = build(bodies)
    with pytest.raises(ValueError):
        root_from_proof(b"a", 3, 3, proofs[0])  # index out of range
    with pytest.raises(ValueError):
        root_from_proof(b"a", 0, 0, ())
    with pytest.raises(ValueError):
        root_from_proof(b"a", 0, 3, proofs[0][:1])  # too short
    with pytest.raises(ValueError):
        root_from_proof(b"a", 0, 3, proofs[0] + (bytes(32),))  # too long
    with pytest.raises(ValueError):
        root_from_proof(b"a", 0, 3, (b"x", proofs[0][1]))  # not a hash
    with pytest.raises(ValueError):
        root_from_proof(b"a", True, 3, proofs[0])  # type: ignore[arg-type]


def test_seal_proof_is_normalised_to_a_tuple() -> None:
    seal = Seal("k", b"s", 0, 2, [bytes(32)])  # type: ignore[arg-type]
    assert seal.proof == (bytes(32),)
    hash(seal)


# -- walking with a proven tree (one receiver checking a whole batch) -----------------

def _check_all(bodies: list[bytes], proofs: list, order: list[int], proven: dict) -> list[bytes]:
    """What a verifier does: walk each leaf, and adopt what it learned (the root is right here)."""
    roots = []
    for i in order:
        root, learned, _ = walk(bodies[i], i, len(bodies), proofs[i], proven or None)
        proven.update(learned)
        roots.append(root)
    return roots


@given(st.lists(st.binary(max_size=20), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_walking_with_a_proven_tree_gives_the_same_root(bodies: list[bytes], rnd) -> None:  # type: ignore[no-untyped-def]
    root, proofs = build(bodies)
    order = list(range(len(bodies)))
    rnd.shuffle(order)
    proven: dict = {}
    assert _check_all(bodies, proofs, order, proven) == [root] * len(bodies)
    # Once every leaf has been seen, every leaf joins the proven tree at once, learning nothing.
    if len(bodies) > 1:
        again = [walk(bodies[i], i, len(bodies), proofs[i], proven) for i in order]
        assert all(joined and not learned for _, learned, joined in again)


@given(st.lists(st.binary(max_size=20), min_size=2, max_size=40, unique=True), st.data())
def test_a_proven_tree_does_not_excuse_a_tampered_leaf_or_proof(bodies: list[bytes], data) -> None:  # type: ignore[no-untyped-def]
    root, proofs = build(bodies)
    proven: dict = {}
    _check_all(bodies, proofs, list(range(len(bodies))), proven)
    i = data.draw(st.integers(0, len(bodies) - 1))
    # Another body at i: a different root, or the walk refuses outright.
    other = bodies[i] + b"!"
    if other not in bodies:
        try:
            assert walk(other, i, len(bodies), proofs[i], proven)[0] != root
        except ValueError:
            pass
    # A changed sibling anywhere in the proof: refused, or a different root.
    if proofs[i]:
        j = data.draw(st.integers(0, len(proofs[i]) - 1))
        bad = list(proofs[i])
        bad[j] = bytes(32) if bad[j] != bytes(32) else b"\x01" * 32
        try:
            assert walk(bodies[i], i, len(bodies), bad, proven)[0] != root
        except ValueError:
            pass
        # Too long or too short is refused whatever is proven.
        with pytest.raises(ValueError):
            walk(bodies[i], i, len(bodies), list(proofs[i]) + [bytes(32)], proven)
        with pytest.raises(ValueError):
            walk(bodies[i], i, len(bodies), list(proofs[i])[:-1], proven)
