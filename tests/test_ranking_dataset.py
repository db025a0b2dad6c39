"""The ranking dataset: windows, labels, point-in-time features, and the LEAK TEST."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from ranking_planted import null_world

from hmrec.ranking.dataset import (
    ARTICLE_FEATURES,
    LIST_FEATURES,
    Window,
    build_ranking_dataset,
    feature_columns,
    feature_rows,
    label_rows,
)
from hmrec.ranking.leakage import feature_separation, null_pattern_leaks


@pytest.fixture(scope="module")
def world() -> dict:
    return null_world(n_customers=600, n_days=42, seed=1)


def _windows(world: dict) -> list[Window]:
    return Window.weeks_before(world["end"], 2)


def test_window_helpers() -> None:
    ws = Window.weeks_before(date(2020, 9, 15), 2)
    assert ws == [Window(date(2020, 9, 1), date(2020, 9, 8)), Window(date(2020, 9, 8), date(2020, 9, 15))]
    with pytest.raises(ValueError, match="after start"):
        Window(date(2020, 1, 2), date(2020, 1, 2))


def test_label_rows_are_distinct_purchases_inside_the_window() -> None:
    tx = pl.DataFrame(
        {
            "t_dat": [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 2), date(2020, 1, 8), date(2020, 1, 7)],
            "customer_id": ["c", "c", "c", "c", "d"],
            "article_id": ["a0", "a1", "a1", "a2", "a3"],
        }
    )
    rows = label_rows(tx, Window(date(2020, 1, 2), date(2020, 1, 8)))
    assert rows.select("customer_id", "article_id").rows() == [("c", "a1"), ("d", "a3")]
    assert rows["as_of"].to_list() == [date(2020, 1, 2)] * 2


def test_random_dataset_ratio_and_features_as_of_window_start(world: dict) -> None:
    ws = _windows(world)
    df = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], ws, negatives="random", seed=0
    )
    n_pos = int(df["label"].sum())
    assert n_pos > 500
    assert df.height - n_pos == 10 * n_pos
    assert set(df["as_of"].unique()) == {w.start for w in ws}
    # no negative equals a positive of the same customer and window
    pos = df.filter(pl.col("label") == 1)
    neg = df.filter(pl.col("label") == 0)
    assert neg.join(pos, on=["customer_id", "article_id", "as_of"], how="semi").height == 0
    assert df.select("customer_id", "article_id", "as_of").is_unique().all()
    # a positive's own purchase is not in its features: recompute counts strictly before as_of
    tx = world["transactions"]
    sample = pos.head(50)
    for r in sample.iter_rows(named=True):
        before = tx.filter(
            (pl.col("customer_id") == r["customer_id"])
            & (pl.col("article_id") == r["article_id"])
            & (pl.col("t_dat") < r["as_of"])
        ).height
        assert r["customer_article_purchases"] == before


def test_every_row_has_context_and_article_attributes(world: dict) -> None:
    df = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], _windows(world), negatives="random"
    )
    for c in ("month_sin", "month_cos", *ARTICLE_FEATURES):
        assert df[c].null_count() == 0, c
    month = df["as_of"].dt.month().cast(pl.Float64).to_numpy()
    assert np.allclose(df["month_sin"].to_numpy(), np.sin(2 * np.pi * month / 12), atol=1e-6)
    feats = feature_columns(df)
    assert "customer_id" not in feats and "label" not in feats and "as_of" not in feats
    assert feats[:2] == ["month_sin", "month_cos"]


def _leak_check(df: pl.DataFrame) -> pl.DataFrame:
    sep = feature_separation(df, feature_columns(df))
    return sep.filter((pl.col("null_share_gap") > 0.02) | (pl.col("auc") > 0.58))


def test_leak_random_negatives_no_feature_separates_classes_in_a_null_world(world: dict) -> None:
    """Purchases here are independent of everything: any separation is a construction leak."""
    df = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], _windows(world), negatives="random", seed=5
    )
    assert df["label"].sum() > 500
    bad = _leak_check(df)
    assert bad.height == 0, bad.to_dicts()
    assert null_pattern_leaks(df, feature_columns(df)) == {}


@pytest.mark.parametrize("positives", ["all", "retrieved"])
def test_leak_retrieval_negatives_missing_pattern_is_the_same_for_both_classes(world: dict, positives: str) -> None:
    rng = np.random.default_rng(0)
    arts = world["articles"]["article_id"].to_list()
    noise = {c: rng.normal(size=len(arts)) for c in world["customers"]["customer_id"].to_list()}
    index = {a: i for i, a in enumerate(arts)}

    def scorer(cids: list[str], aids: list[str], as_of: date) -> np.ndarray:
        return np.array([noise[c][index[a]] for c, a in zip(cids, aids)])

    def candidates(cids: list[str], as_of: date, k: int) -> dict:
        out = {}
        for c in cids:
            order = np.argsort(-noise[c])[:k]
            out[c] = [(arts[i], float(noise[c][i])) for i in order]
        return out

    df = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], _windows(world),
        negatives="retrieval", candidates=candidates, pair_scorer=scorer, k=40, positives=positives,
    )
    assert df["label"].sum() > 300 and (df["label"] == 0).sum() > 5000
    for c in ("month_sin", "month_cos", "two_tower_score"):
        assert df[c].null_count() == 0, c
    assert null_pattern_leaks(df, feature_columns(df), max_gap=0.02) == {}
    sep = feature_separation(df, feature_columns(df))
    if positives == "retrieved":
        # both classes come from the same candidate lists: nothing may separate them
        assert sep["auc"].max() < 0.58, sep.head(3).to_dicts()
    else:
        # negatives are the top of each list, positives are any purchase: the score
        # separates by selection (honestly, and the reason "retrieved" is the default);
        # nothing else may (the list features are the score's place in the list: same story)
        assert sep.filter(pl.col("feature") == "two_tower_score")["auc"].item() > 0.7
        score_based = ["two_tower_score", *LIST_FEATURES]
        others = sep.filter(~pl.col("feature").is_in(score_based))
        assert others["auc"].max() < 0.58, others.head(3).to_dicts()


def test_leak_check_catches_the_reference_courses_month_leak(world: dict) -> None:
    """The check itself can fail: null month features on negatives (the Hopsworks H&M tutorial's bug) are flagged."""
    df = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], _windows(world), negatives="random"
    )
    leaky = df.with_columns(
        pl.when(pl.col("label") == 1).then(pl.col(c)).otherwise(None).alias(c) for c in ("month_sin", "month_cos")
    )
    bad = _leak_check(leaky)
    assert set(bad["feature"]) == {"month_sin", "month_cos"}
    assert bad["auc"].min() > 0.99
    assert set(null_pattern_leaks(leaky, feature_columns(leaky))) == {"month_sin", "month_cos"}


def test_in_sample_window_is_refused(world: dict) -> None:
    ws = _windows(world)
    with pytest.raises(ValueError, match="in-sample"):
        build_ranking_dataset(
            world["transactions"], world["articles"], world["customers"], ws, negatives="random",
            retrieval_train_end=ws[0].start + timedelta(days=1),
        )


def test_retrieval_needs_candidates(world: dict) -> None:
    with pytest.raises(ValueError, match="candidates"):
        build_ranking_dataset(world["transactions"], world["articles"], world["customers"], _windows(world))


def test_feature_rows_takes_a_given_score_but_rejects_partial_ones(world: dict) -> None:
    pairs = pl.DataFrame(
        {
            "customer_id": world["customers"]["customer_id"].head(2),
            "article_id": world["articles"]["article_id"].head(2),
            "as_of": [world["end"]] * 2,
            "two_tower_score": [0.5, 0.25],
        }
    )
    out = feature_rows(pairs, world["transactions"], world["articles"], world["customers"])
    assert out["two_tower_score"].to_list() == [0.5, 0.25]
    with pytest.raises(ValueError, match="null"):
        feature_rows(
            pairs.with_columns(pl.Series("two_tower_score", [0.5, None])),
            world["transactions"], world["articles"], world["customers"],
        )


def test_thinning_and_customer_restriction(world: dict) -> None:
    arts = world["articles"]["article_id"].to_list()

    def candidates(cids: list[str], as_of: date, k: int) -> dict:
        return {c: [(a, 0.0) for a in arts[:k]] for c in cids}

    ws = _windows(world)
    full = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], ws, candidates=candidates, k=60
    )
    thin = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], ws, candidates=candidates, k=60,
        negatives_per_customer=5,
    )
    pos_cols = ["customer_id", "article_id", "as_of"]
    assert thin.filter(pl.col("label") == 1).select(pos_cols).equals(full.filter(pl.col("label") == 1).select(pos_cols))
    per = thin.filter(pl.col("label") == 0).group_by("customer_id", "as_of").len()
    assert per["len"].max() == 5
    assert thin.filter(pl.col("label") == 0).join(full.filter(pl.col("label") == 0), on=pos_cols, how="anti").height == 0
    some = sorted(set(full["customer_id"].to_list()))[:7]
    only = build_ranking_dataset(
        world["transactions"], world["articles"], world["customers"], ws, candidates=candidates, k=60,
        customer_ids=some,
    )
    assert set(only["customer_id"]) == set(some)
    assert only.height == full.filter(pl.col("customer_id").is_in(some)).height
