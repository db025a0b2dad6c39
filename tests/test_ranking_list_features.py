"""List-position features (two_tower_rank / two_tower_gap) and the per-week customer sample."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from ranking_planted import null_world

from hmrec.ranking.dataset import (
    LIST_FEATURES,
    Window,
    add_list_features,
    build_ranking_dataset,
    feature_columns,
    list_features_of,
    sample_customers,
)


def test_rank_and_gap_by_hand_with_ties_and_nan() -> None:
    df = pl.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b"],
            "as_of": [date(2020, 1, 1)] * 6,
            "article_id": ["1", "2", "3", "4", "1", "2"],
            "two_tower_score": [0.5, 2.0, 0.5, float("nan"), -1.0, -3.0],
        }
    )
    out = add_list_features(df)
    assert out["two_tower_rank"].to_list() == [2, 1, 2, None, 1, 2]
    assert out["two_tower_gap"].to_list() == pytest.approx([-1.5, 0.0, -1.5, None, 0.0, -2.0], nan_ok=True)
    # the one-customer NumPy version gives the same numbers (NaN where the frame has null)
    one = list_features_of(np.array([0.5, 2.0, 0.5, np.nan]))
    assert one["two_tower_rank"][:3].tolist() == [2, 1, 2] and np.isnan(one["two_tower_rank"][3])
    assert one["two_tower_gap"][:3].tolist() == pytest.approx([-1.5, 0.0, -1.5])
    # as_of separates lists too
    later = df.with_columns(pl.when(pl.col("article_id") == "2").then(date(2020, 1, 8)).otherwise(pl.col("as_of")).alias("as_of"))
    assert add_list_features(later).filter(pl.col("customer_id") == "a")["two_tower_rank"].to_list()[:3] == [1, 1, 1]
    # no score, no list features (never filled for some rows only)
    assert add_list_features(df.drop("two_tower_score")).columns == df.drop("two_tower_score").columns


def test_numpy_and_frame_versions_agree_on_random_lists() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    frame = add_list_features(pl.DataFrame({
        "customer_id": ["c"] * 200, "as_of": [date(2020, 1, 1)] * 200, "two_tower_score": scores}))
    one = list_features_of(scores)
    assert frame["two_tower_rank"].to_numpy().tolist() == one["two_tower_rank"].tolist()
    assert np.allclose(frame["two_tower_gap"].to_numpy(), one["two_tower_gap"])


def test_sample_customers_is_seeded_and_keeps_whole_customers() -> None:
    rows = pl.DataFrame({"customer_id": [f"c{i % 10}" for i in range(50)], "x": range(50)})
    a = sample_customers(rows, 4, seed=1)
    assert a["customer_id"].n_unique() == 4
    assert a.height == 20  # every row of a sampled customer
    assert a.equals(sample_customers(rows, 4, seed=1))
    assert sample_customers(rows, 10, seed=1).equals(rows)
    with pytest.raises(ValueError, match="max_customers"):
        sample_customers(rows, -1, seed=1)


@pytest.fixture(scope="module")
def world() -> dict:
    return null_world(n_customers=300, n_days=28, seed=5)


def test_thinned_negatives_keep_their_place_in_the_whole_list(world: dict) -> None:
    """Thinning drops rows, not information: a kept row's rank is its rank among ALL candidates."""
    arts = world["articles"]["article_id"].to_list()
    index = {a: i for i, a in enumerate(arts)}
    rng = np.random.default_rng(0)
    noise = {c: rng.normal(size=len(arts)) for c in world["customers"]["customer_id"].to_list()}

    def scorer(cids: list[str], aids: list[str], as_of: date) -> np.ndarray:
        return np.array([noise[c][index[a]] for c, a in zip(cids, aids)], dtype=np.float32)

    def candidates(cids: list[str], as_of: date, k: int) -> dict:
        return {c: [(arts[i], float(noise[c][i])) for i in np.argsort(-noise[c])[:k]] for c in cids}

    ws = [Window(world["end"] - (world["end"] - world["start"]) // 2, world["end"])]
    args = (world["transactions"], world["articles"], world["customers"], ws)
    full = build_ranking_dataset(*args, candidates=candidates, pair_scorer=scorer, k=40)
    thin = build_ranking_dataset(*args, candidates=candidates, pair_scorer=scorer, k=40, negatives_per_customer=3)
    assert set(LIST_FEATURES) <= set(feature_columns(full))
    assert full["two_tower_rank"].null_count() == 0
    # unthinned: each customer's rows are the whole top-40 list, ranks 1..40
    per = full.group_by("customer_id").agg(pl.col("two_tower_rank").sort())
    assert all(r == list(range(1, 41)) for r in per["two_tower_rank"].to_list())
    keys = ["customer_id", "article_id", "as_of"]
    both = thin.join(full, on=keys, suffix="_full")
    assert both.height == thin.height < full.height
    assert both["two_tower_rank"].to_list() == both["two_tower_rank_full"].to_list()
    assert np.allclose(both["two_tower_gap"].to_numpy(), both["two_tower_gap_full"].to_numpy())
    # per-week customer sample: the same customers in both negative kinds
    few = build_ranking_dataset(*args, candidates=candidates, pair_scorer=scorer, k=40, max_customers=15)
    rnd = build_ranking_dataset(*args, negatives="random", positives="all", max_customers=15)
    assert few["customer_id"].n_unique() <= 15
    assert set(few["customer_id"]) <= set(rnd["customer_id"]) and rnd["customer_id"].n_unique() == 15
