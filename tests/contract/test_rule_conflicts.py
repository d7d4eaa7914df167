"""A rule between fields that only merging concurrent changes breaks is an open conflict, never a
refusal, on every backend (issue 11: "Cross-field rules that are broken only by merging concurrent
deltas show as conflicts, never as refusals, so replicas cannot diverge on arrival order").

44 corrects a person's birth date (and the id_number that encodes it); 45, before it has that,
records the date the person moved in: after the old birth date, before the new one. Each write
keeps every rule on the record its writer held. A replica that receives both, in either order,
accepts both, and shows the record as conflicted on the two fields.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from core.idnumber import make_id_number
from core.kinds import open_conflicts
from core.record import RecordState
from store.store import Store
from tests.contract.test_store import KIND, Authors, accept_all, open_store
from tests.support.pki import PKI


def test_a_rule_broken_only_by_merging_is_an_open_conflict_in_either_order(db_url: str, pki: PKI, tmp_path: Path,
                                                                            opened: list[Store]) -> None:
    authors = Authors(pki, tmp_path, opened)
    values = authors.person("44", "45")
    area = str(values["id_number"])[:6]
    values.update(birth_date="2001-06-19", id_number=make_id_number(area, date(2001, 6, 19), 1), sex="M")
    values.pop("moved_in_on", None)
    rid = "00000000-0000-4000-8000-0000000000aa"
    _, created = authors.write("province-44", "44", "45", values=values, record_id=rid)
    s45 = authors.store("province-45")
    s45.ingest(accept_all(pki, [created]), [], via="hub-pearl", now_ms=authors.now())
    # Concurrently: 44 moves the birth date (with its id_number), 45 records the move-in date.
    _, by44 = authors.write("province-44", "44", "45", record_id=rid, values={
        "birth_date": "2005-03-04", "id_number": make_id_number(area, date(2005, 3, 4), 1)})
    _, by45 = authors.write("province-45", "44", "45", record_id=rid, values={"moved_in_on": "2003-01-01"})

    shown = []
    for order in ([created, by44, by45], [created, by45, by44]):
        replica = open_store(db_url if not shown else f"sqlite:///{tmp_path / 'second.db'}", opened,
                             owner="hub-national")
        for env in order:  # one batch each, in this order
            result = replica.ingest(accept_all(pki, [env]), [], via="hub-pearl", now_ms=authors.now())
            assert (result.applied, result.quarantined) == (1, 0)  # never refused
        state = replica.get(KIND, rid)
        assert isinstance(state, RecordState)
        assert state.conflicts() == {}  # no field was written twice: only the rule is broken
        assert open_conflicts(state) == ["birth_date", "moved_in_on"]
        assert [r.record_id for r in replica.iter_records(KIND, conflicted_only=True)] == [rid]
        assert replica.count_records(conflicted_only=True) == 1
        shown.append(state.values())
    assert shown[0] == shown[1]  # the same record whatever the arrival order
