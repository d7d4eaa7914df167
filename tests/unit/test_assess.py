"""The assessment's arithmetic: folding query rows into figures, medians from histograms, the
indicators and the weighted score, and the weights file's validation."""

from __future__ import annotations

import pytest

from core.assess import Weights, blank, fold, median_of, ranked, score
from core.errors import ValidationError


def test_median_of_histogram() -> None:
    assert median_of([]) is None
    assert median_of([(3, 1)]) == 3
    assert median_of([(1, 1), (5, 1)]) == 3
    assert median_of([(2, 2), (0, 1), (9, 1)]) == 2  # 0 2 2 9
    assert median_of([(4, 3), (1, 0)]) == 4


def test_fold_and_score_by_hand() -> None:
    docs = {c: blank(c, c, "") for c in ("44", "65")}
    fold(docs, pairs=[("65", "44", 4), ("44", "65", 1)], served=[("44", 3)], verified=[("44", 2)],
         issued=[("65", 5)], revoked=[("65", 1)],
         requests=[("65", "household", 2, 1, 1), ("44", "residence", 1, 1, 0)],
         answer_days=[("65", "household", 2, 1), ("65", "household", 6, 1), ("44", "residence", 1, 1)],
         quarantined={"province-65": 1}, delivery={"44": (1.0, 30.0), "65": (2.0, 120.0)})
    g, x = docs["44"], docs["65"]
    assert g["residence"] == {"migrants": 4, "served": 3, "coverage": 0.75, "certificates_verified": 2,
                              "requests": {"received": 1, "answered_on_time": 1, "overdue": 0,
                                           "median_answer_days": 1}}
    assert x["household"]["living_elsewhere"] == 4 and x["household"]["certificates_issued"] == 5
    assert x["household"]["requests"]["median_answer_days"] == 4
    w = Weights()
    s44, ind44 = score(g, w)
    # coverage .75*30 + residence answers 1*25 + delivery 1*10 + clean 1*10, household n/a: / 75
    assert ind44 == {"coverage": 0.75, "residence_answers": 1.0, "household_answers": None, "delivery": 1.0,
                     "clean": 1.0}
    assert s44 == round(100 * (22.5 + 25 + 10 + 10) / 75, 1) == 90.0
    s65, ind65 = score(x, w)
    # coverage 0/1 * 30, household answers 1/2 * 25, delivery 60/120 * 10, clean 1/2 * 10; residence n/a: / 75
    assert ind65["coverage"] == 0 and ind65["delivery"] == 0.5 and ind65["clean"] == 0.5
    assert s65 == round(100 * (0 + 12.5 + 5 + 5) / 75, 1) == 30.0
    docs["11"] = blank("11", "11", "")  # nothing to assess: no score, listed last
    assert [(d["province"], d["score"]) for d in ranked(docs.values(), w)] == [("44", 90.0), ("65", 30.0), ("11", None)]


def test_weights_file() -> None:
    w = Weights.parse({"delivery_target_s": 30, "weights": {"coverage": 1, "clean": 0}})
    assert w.weights == {"coverage": 1.0, "clean": 0.0} and w.delivery_target_s == 30
    for doc, where in [({"weights": {"speed": 1}}, "weights.speed"), ({"weights": {"coverage": -1}}, "weights.coverage"),
                       ({"weights": {"coverage": 0}}, "weights"), ({"delivery_target_s": 0, "weights": {"clean": 1}},
                                                                    "delivery_target_s"),
                       ({"weight": {}}, "weight"), ({"weights": {"coverage": True}}, "weights.coverage")]:
        with pytest.raises(ValidationError) as err:
            Weights.parse(doc, "f.toml")
        assert where in str(err.value)


def test_shipped_weights_file_is_the_documented_default() -> None:
    import tomllib

    from cli.assess import DEFAULT_WEIGHTS

    with open(DEFAULT_WEIGHTS, "rb") as handle:
        assert Weights.parse(tomllib.load(handle)) == Weights()


def test_fold_delivery_rows_from_the_log_and_quarantine_by_party() -> None:
    docs = {c: blank(c, c, "") for c in ("44", "65", "11")}
    fold(docs, delivered={"province-44": (3, 1500.0, 4000), "hub-pearl": (9, 1.0, 2)},
         quarantined={"province-65": 2, "hub-pearl": 5}, claiming={"province-65": 1, "province-11": 3},
         delivery={"44": (9.0, 9.0), "65": (2.0, 7.5)})
    # The log's rows (ms) win over given seconds; a province without a row keeps the given figures.
    assert docs["44"]["federation"] == {"delivery_changes": 3, "delivery_p50_s": 1.5, "delivery_p95_s": 4.0,
                                        "quarantined": 0, "quarantined_claiming": 0}
    assert docs["65"]["federation"] == {"delivery_changes": 0, "delivery_p50_s": 2.0, "delivery_p95_s": 7.5,
                                        "quarantined": 2, "quarantined_claiming": 1}
    assert docs["11"]["federation"] == {"delivery_changes": 0, "delivery_p50_s": None, "delivery_p95_s": None,
                                        "quarantined": 0, "quarantined_claiming": 3}
