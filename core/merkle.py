"""Merkle batch seals: one Ed25519 signature covers a whole batch of changes.

How this works: the origin hashes each change body into a leaf
(``sha256(0x00 || body)``), pairs leaves into interior nodes
(``sha256(0x01 || left || right)``) level by level, and signs the root once.
Each change then travels with a ``Seal``: the signer's key id, the signature,
its ``index`` in the batch, the batch ``size`` and its ``proof`` (sibling
hashes, bottom-up). After routing splits the batch, every change is still
verifiable on its own, and a verifier that has already checked the signature
for that root skips the Ed25519 work.

Tree shape: when a level has an odd number of nodes, the last node is
*promoted unchanged* to the next level (it is not hashed with itself, which
would let ``[a, b, c]`` and ``[a, b, c, c]`` share a root). A one-leaf batch's
root is that leaf's hash.

Proof representation: a proof is just the sibling hashes that exist, bottom-up.
Which levels had no sibling (promotion) and which side each sibling is on are
both *derived* from ``(index, size)``: at a level of width ``w``, position
``p`` has a left sibling if ``p`` is odd, a right sibling if ``p + 1 < w``,
and none otherwise. So a proof must have exactly as many entries as that walk
consumes; anything else is rejected rather than guessed at.

What is authenticated: the signature covers only the root, so a valid seal
proves *this exact body was in a batch signed by that key*. ``index`` and
``size`` are locators. For a given size the index is bound (moving a unique
body to another index fails), but size is not signed: the last leaf of a
3-batch, whose hash was promoted, also verifies as index 1 of a "2-batch".
Equal bodies are interchangeable. Anything whose position matters (sequence
numbers, ordering) must be inside the body.

The leaf/interior prefixes keep an interior node from being presented as a
leaf (second preimage). Pure: hashlib only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

HASH_SIZE = 32
SIGNED_PREFIX = b"yipanqi/batch/v1\n"

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(_LEAF + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _levels(hashes: list[bytes]) -> list[list[bytes]]:
    levels = [hashes]
    while len(levels[-1]) > 1:
        cur = levels[-1]
        nxt = [_node(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])  # promoted unchanged
        levels.append(nxt)
    return levels


def build(leaves: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, ...]]]:
    """Root over the leaf bodies, and each leaf's proof (siblings, bottom-up).

    O(n) hashing; proof assembly is O(n log n) in references copied.
    """
    if not leaves:
        raise ValueError("cannot build a Merkle tree over an empty batch")
    levels = _levels([leaf_hash(b) for b in leaves])
    proofs: list[tuple[bytes, ...]] = []
    for index in range(len(leaves)):
        proof: list[bytes] = []
        pos = index
        for level in levels[:-1]:
            sibling = pos ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            pos //= 2
        proofs.append(tuple(proof))
    return levels[-1][0], proofs


def root_from_proof(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Recompute the root from a leaf *body*, its position and its proof.

    Raises ValueError if (index, size, proof) are inconsistent: index out of
    range, a sibling that is not a 32-byte hash, or too few/many siblings for
    the path that (index, size) determines.
    """
    return walk(leaf, index, size, proof, None)[0]


# One batch's verified tree: (level, position) -> (hash, the proof from there up to the root).
Proven = dict[tuple[int, int], tuple[bytes, tuple[bytes, ...]]]
_ROOT = (-1, 0)


def walk(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], proven: Proven | None
) -> tuple[bytes, Proven, bool]:
    """``root_from_proof``, reusing the nodes of a tree already verified.

    ``proven`` holds nodes of *this batch's* tree (same key, signature and
    size) that earlier leaves proved against a signed root, each with the
    proof that leads from it to the root. Once the path reaches a proven
    node, the rest of its proof must be exactly that node's (any other
    sibling leads, short of a SHA-256 collision, to another root, so the seal
    fails here and now) and the root is the proven root. A whole batch then
    costs about two hashes per leaf instead of log2(size) + 1.

    Returns (root, learned, joined): ``learned`` holds the path's new nodes
    and siblings; ``joined`` says the path reached proven nodes, so its root
    is already verified and ``learned`` may be added to ``proven`` at once.
    Otherwise add it only after the signature over this root has verified.
    """
    if type(index) is not int or type(size) is not int:
        raise ValueError("index and size must be ints")
    if size < 1 or not 0 <= index < size:
        raise ValueError(f"index {index} out of range for batch size {size}")
    proof = tuple(proof)
    node = leaf_hash(leaf)
    steps: list[tuple[int, int, bytes, int, bool]] = []  # (level, position, node, its proof's start, paired)
    used = 0
    pos, width, level = index, size, 0
    while width > 1:
        if proven is not None:
            known = proven.get((level, pos))
            if known is not None and known[0] == node:
                if proof[used:] != known[1]:
                    raise ValueError("proof disagrees with the verified tree of its batch")
                return proven[_ROOT][0], _learned(steps, proof), True
        has_left = pos % 2 == 1
        paired = has_left or pos + 1 < width
        steps.append((level, pos, node, used, paired))
        if paired:
            if used >= len(proof):
                raise ValueError("proof too short for its index and size")
            sibling = proof[used]
            used += 1
            if not isinstance(sibling, bytes) or len(sibling) != HASH_SIZE:
                raise ValueError("proof entries must be 32-byte hashes")
            node = _node(sibling, node) if has_left else _node(node, sibling)
        pos //= 2
        width = (width + 1) // 2
        level += 1
    if used != len(proof):
        raise ValueError("proof too long for its index and size")
    learned = _learned(steps, proof)
    learned[_ROOT] = (node, ())
    return node, learned, False


def _learned(steps: list[tuple[int, int, bytes, int, bool]], proof: tuple[bytes, ...]) -> Proven:
    """Each node of a checked path, and each sibling, with its proof up to the root."""
    out: Proven = {}
    for level, pos, node, start, paired in steps:
        out[(level, pos)] = (node, proof[start:])
        if paired:  # the sibling's own proof starts with this node
            out[(level, pos ^ 1)] = (proof[start], (node,) + proof[start + 1:])
    return out


def signed_message(root: bytes) -> bytes:
    """The exact bytes an origin signs for a batch."""
    if len(root) != HASH_SIZE:
        raise ValueError("root must be a 32-byte hash")
    return SIGNED_PREFIX + root


@dataclass(frozen=True)
class Seal:
    """One change's share of a batch signature."""

    key_id: str
    signature: bytes
    index: int
    size: int
    proof: tuple[bytes, ...]

    def __post_init__(self) -> None:
        # Decoders may hand us a list; keep Seals hashable and immutable.
        if not isinstance(self.proof, tuple):
            object.__setattr__(self, "proof", tuple(self.proof))

    def root_for(self, body: bytes) -> bytes:
        """The root this seal claims for ``body``. ValueError if inconsistent."""
        return root_from_proof(body, self.index, self.size, self.proof)
