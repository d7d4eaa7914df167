"""The quarantine cap per charged party, in rows and in bytes (store.quarantine), on every backend.

Issue 11: "Quarantine is capped per charged party, in rows and bytes. Past the cap the changes are
counted and dropped, and `status` says so." The rows cap is exercised end to end in
tests/integration/test_abuse.py; here both caps are checked exactly, and that one party's junk
never takes the space of another's. Issue 10: "No quarantine cap ever drops a verified parked
delta": a party over its cap still has every verified delta of its that waits for its history kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.change import Envelope
from core.merkle import Seal
from store.quarantine import MAX_BYTES, MAX_ROWS
from store.store import Refused, Store
from tests.contract.test_store import T0, Authors, accept_all, open_store
from tests.support.pki import PKI


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url, owner="hub-national", hold_records=False)
    yield s
    s.close()


def junk(n: int, size: int, charged: str) -> list[Refused]:
    return [Refused(Envelope(b"x" * size, Seal("", b"", 0, 1, ())), "malformed: junk", charged=charged)
            for _ in range(n)]


def test_quarantine_is_capped_per_party_in_bytes(store: Store) -> None:
    size = 256 * 1024  # 32 of these fill a party's 8 MiB; the 33rd is over
    fits = MAX_BYTES // size
    assert fits < MAX_ROWS  # the bytes cap, not the rows cap, is what is reached here
    result = store.ingest([], junk(fits + 5, size, "province-44"), via="hub-pearl", now_ms=1)
    assert (result.quarantined, result.dropped) == (fits + 5, 5)
    # Another party's refusals are kept: 44's junk took only 44's share.
    result = store.ingest([], junk(2, size, "province-45"), via="hub-pearl", now_ms=2)
    assert (result.quarantined, result.dropped) == (2, 0)
    # Even a small one is over 44's cap now: counted, not kept.
    result = store.ingest([], junk(1, 10, "province-44"), via="hub-pearl", now_ms=3)
    assert (result.quarantined, result.dropped) == (1, 1)
    shares = store.quarantine_shares()
    assert shares["province-44"] == {"rows": fits, "bytes": fits * size, "dropped": 6}, shares
    assert shares["province-45"] == {"rows": 2, "bytes": 2 * size, "dropped": 0}, shares
    assert store.count_quarantined() == fits + 2


def test_quarantine_is_capped_per_party_in_rows(store: Store) -> None:
    result = store.ingest([], junk(MAX_ROWS + 3, 10, "hub-bohai"), via="hub-bohai", now_ms=1)
    assert (result.quarantined, result.dropped) == (MAX_ROWS + 3, 3)
    assert store.quarantine_shares()["hub-bohai"] == {"rows": MAX_ROWS, "bytes": MAX_ROWS * 10, "dropped": 3}
    assert store.count_quarantined() == MAX_ROWS


def test_a_party_over_its_cap_still_has_its_verified_parked_deltas_kept(db_url: str, pki: PKI, authors: Authors,
                                                                        opened: list[Store]) -> None:
    node = open_store(db_url, opened, owner="province-44")
    result = node.ingest([], junk(MAX_ROWS + 2, 10, "province-11"), via="hub-pearl", now_ms=T0)
    assert (result.quarantined, result.dropped) == (MAX_ROWS + 2, 2)
    creates = [authors.write("province-11", "11", "44") for _ in range(3)]
    edits = [authors.write("province-11", "11", "44", values={"children": 3}, record_id=w.record_id)
             for w, _ in creates]
    assert all(e.delta.deps == (c.id,) for (c, _), (e, _) in zip(creates, edits))
    # 11's edits arrive before their creates: verified, and parked however full 11's share is.
    result = node.ingest(accept_all(pki, [env for _, env in edits]), [], via="hub-pearl", now_ms=T0 + 10_000)
    assert (result.held, result.parked, result.quarantined, result.dropped) == (0, 3, 0, 0)
    assert sorted(p.digest for p in node.parked_deltas()) == sorted(e.id for e, _ in edits)
    assert node.quarantine_shares()["province-11"] == {"rows": MAX_ROWS, "bytes": MAX_ROWS * 10, "dropped": 2}
    # The creates release them; a refusal charged to 11 in the same batch is still over its cap.
    result = node.ingest(accept_all(pki, [env for _, env in creates]), junk(1, 10, "province-11"), via="hub-pearl",
                         now_ms=T0 + 20_000)
    assert (result.held, sorted(result.released), result.dropped) == (6, sorted(e.id for e, _ in edits), 1)
    assert node.parked_deltas() == [] and all(node.get("person", e.record_id).values()["children"] == 3  # type: ignore[union-attr]
                                              for e, _ in edits)
