"""Baselines on hand-made data give the lists one can work out by hand."""

import datetime as dt

import polars as pl
import pytest

from hmrec.evaluation import (
    ALSBaseline,
    EvaluationInputError,
    PopularityBaseline,
    PopularityByAgeBaseline,
    RepurchasePopularityBaseline,
    popularity_ranking,
)

LAST = dt.date(2020, 9, 15)


def tx(rows):
    """rows: (days before LAST, customer, article)."""
    return pl.DataFrame(
        {
            "t_dat": [LAST - dt.timedelta(days=r[0]) for r in rows],
            "customer_id": [r[1] for r in rows],
            "article_id": [r[2] for r in rows],
        },
        schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String},
    )


def customers(ages):
    return pl.DataFrame({"customer_id": list(ages), "age": list(ages.values())}, schema={"customer_id": pl.String, "age": pl.Int16})


# last week: b x3, a x2, c x2 (c sold more overall), d x1; e only long ago (x5)
HISTORY = tx(
    [(0, "u1", "b"), (1, "u2", "b"), (6, "u3", "b"), (2, "u1", "a"), (3, "u2", "a"), (4, "u3", "c"),
     (5, "u1", "c"), (30, "u4", "c"), (1, "u4", "d")]
    + [(40, "u5", "e")] * 5
)


def test_popularity_orders_by_last_week_then_all_time_then_id():
    assert popularity_ranking(HISTORY, 7) == ["b", "c", "a", "d", "e"]
    recs = PopularityBaseline().fit(HISTORY).recommend(["u1", "nobody"], k=3)
    assert recs == {"u1": ["b", "c", "a"], "nobody": ["b", "c", "a"]}


def test_popularity_window_matters():
    # with a 1-day window only b (day 0) sold recently; the rest by all-time sales
    assert popularity_ranking(HISTORY, 1) == ["b", "e", "c", "a", "d"]


def test_popularity_k_larger_than_catalogue_lists_every_article_once():
    assert PopularityBaseline().fit(HISTORY).recommend(["u1"], k=50)["u1"] == ["b", "c", "a", "d", "e"]


def test_popularity_by_age_uses_the_group_then_falls_back_to_global():
    hist = tx([(0, "young1", "y1"), (1, "young2", "y1"), (2, "young1", "y2"),
               (0, "old1", "o1"), (1, "old1", "o1"), (2, "old2", "o1"), (3, "old2", "y2")])
    cust = customers({"young1": 22, "young2": 24, "old1": 60, "old2": 58, "noage": None, "young3": 20})
    model = PopularityByAgeBaseline().fit(hist, cust)
    recs = model.recommend(["young3", "old1", "noage", "stranger"], k=3)
    # global: o1 x3, y2 x2, y1 x2 -> y1 < y2 by id
    assert recs["noage"] == ["o1", "y1", "y2"]
    assert recs["stranger"] == ["o1", "y1", "y2"]
    # 19-25 group: y1 x2, y2 x1, then padded with global o1
    assert recs["young3"] == ["y1", "y2", "o1"]
    # 56-65 group: o1 x3, y2 x1, then global without repeating
    assert recs["old1"] == ["o1", "y2", "y1"]


def test_repurchase_puts_own_recent_then_frequent_purchases_first():
    hist = tx([(10, "u1", "x"), (10, "u1", "y"), (10, "u1", "y"), (2, "u1", "z"), (0, "u2", "p"), (0, "u3", "p"), (1, "u2", "q")])
    recs = RepurchasePopularityBaseline().fit(hist).recommend(["u1", "new"], k=5)
    # own: z (newest), then day 10: y (2 units) before x; then popular p, q
    assert recs["u1"] == ["z", "y", "x", "p", "q"]
    assert recs["new"] == ["p", "q", "z", "y", "x"][:5] == PopularityBaseline().fit(hist).recommend(["new"], 5)["new"]


def test_repurchase_fill_never_repeats_an_article_and_max_days_limits_own():
    hist = tx([(0, "u1", "p"), (0, "u2", "p"), (20, "u1", "old")])
    assert RepurchasePopularityBaseline().fit(hist).recommend(["u1"], k=2)["u1"] == ["p", "old"]
    assert RepurchasePopularityBaseline(max_days=7).fit(hist).recommend(["u1"], k=1)["u1"] == ["p"]


def _als_history():
    rows = []
    # two taste clusters: u0..u9 buy a0..a4, u10..u19 buy b0..b4
    for u in range(20):
        items = [f"a{i}" for i in range(5)] if u < 10 else [f"b{i}" for i in range(5)]
        for j, item in enumerate(items):
            if (u + j) % 5 != 0:  # each customer misses one article of their cluster
                rows.append((j, f"u{u}", item))
    return tx(rows)


def test_als_is_deterministic_and_recommends_only_known_articles():
    hist = _als_history()
    known = set(hist["article_id"].to_list())
    ids = [f"u{u}" for u in range(20)] + ["stranger"]
    first = ALSBaseline(factors=4, iterations=10, seed=7).fit(hist).recommend(ids, k=4)
    second = ALSBaseline(factors=4, iterations=10, seed=7).fit(hist).recommend(ids, k=4)
    assert first == second
    for listed in first.values():
        assert len(listed) == 4 and len(set(listed)) == 4 and set(listed) <= known
    # a stranger gets global popularity
    assert first["stranger"] == PopularityBaseline().fit(hist).recommend(["stranger"], 4)["stranger"]


def test_als_learns_the_clusters_and_can_skip_purchased():
    hist = _als_history()
    model = ALSBaseline(factors=4, iterations=15, alpha=10.0, seed=1, filter_already_purchased=True).fit(hist)
    recs = model.recommend(["u0", "u15"], k=1)
    # u0 bought a1..a4, missed a0; u15 bought b0,b1,b2,b4 ((15+3)%5 != 0 -> b3 bought; (15+0)%5==0 -> b0 missed)
    assert recs["u0"] == ["a0"]
    assert recs["u15"] == ["b0"]
    # candidates are the same ordering, longer; k beyond the catalogue is padded to all articles
    cands = model.candidates(["u0"], k=100)["u0"]
    assert cands[0] == "a0" and len(cands) == 10


def test_bad_input_is_a_clear_error():
    with pytest.raises(EvaluationInputError, match="customer_id"):
        PopularityBaseline().fit(HISTORY.drop("customer_id"))
    with pytest.raises(EvaluationInputError, match="no rows"):
        RepurchasePopularityBaseline().fit(HISTORY.head(0))
    with pytest.raises(EvaluationInputError, match="age"):
        PopularityByAgeBaseline().fit(HISTORY, pl.DataFrame({"customer_id": ["u1"]}))
    with pytest.raises(ValueError, match="k must be"):
        PopularityBaseline().fit(HISTORY).recommend(["u1"], k=0)


def test_repurchase_longer_then_shorter_request_gives_the_prefix():
    hist = tx([(i, "u1", f"a{i}") for i in range(15)] + [(0, "u2", "p")])
    model = RepurchasePopularityBaseline().fit(hist)
    long = model.recommend(["u1", "u2"], k=14)
    short = model.recommend(["u1", "u2"], k=3)
    assert short["u1"] == long["u1"][:3] == ["a0", "a1", "a2"]
    assert short["u2"] == ["p", "a0", "a1"]
    assert model.recommend(["u2"], k=2) == {"u2": ["p", "a0"]}
