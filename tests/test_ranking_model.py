"""CatBoost wrapper: categorical detection, save -> load identical predictions, importance."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from hmrec.ranking.model import RankingModel, categorical_columns


def _frame(n: int = 600, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "blue", "green"], n).tolist()
    x = rng.normal(size=n)
    logit = 2.0 * x + np.where(np.array(colour) == "red", 1.5, -0.5)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    colour = [None if i % 17 == 0 else c for i, c in enumerate(colour)]  # nullable category
    return pl.DataFrame(
        {
            "customer_id": [f"c{i // 6:04d}" for i in range(n)],
            "as_of": [date(2020, 9, 1)] * n,
            "colour": colour,
            "x": pl.Series(np.where(np.arange(n) % 13 == 0, np.nan, x), dtype=pl.Float32).fill_nan(None),
            "k": pl.Series(rng.integers(0, 5, n), dtype=pl.Int32),
            "label": label,
        }
    )


FEATURES = ["colour", "x", "k"]


def test_categorical_columns_are_the_string_ones() -> None:
    df = _frame(20)
    assert categorical_columns(df, FEATURES) == ["colour"]
    assert categorical_columns(df) == ["customer_id", "colour"]


@pytest.mark.parametrize("kind", ["classifier", "ranker"])
def test_save_load_gives_identical_predictions(kind: str, tmp_path) -> None:
    train, valid = _frame(600, 0), _frame(300, 1)
    model = RankingModel(kind=kind, iterations=30, depth=4, thread_count=1).fit(train, FEATURES, valid)
    before = model.predict(valid)
    path = model.save(tmp_path / "ranking_model")
    loaded = RankingModel.load(path)
    after = loaded.predict(valid)
    assert np.array_equal(before, after)
    assert loaded.kind == kind
    assert loaded.feature_names_ == FEATURES and loaded.cat_features_ == ["colour"]
    # a frame with the columns in another order and extra columns predicts the same
    shuffled = valid.select("label", "k", "x", "colour", "customer_id", "as_of")
    assert np.array_equal(loaded.predict(shuffled), before)


def test_classifier_learns_and_outputs_probabilities() -> None:
    train, valid = _frame(1500, 0), _frame(500, 1)
    model = RankingModel(iterations=50, depth=4, thread_count=1).fit(train, FEATURES, valid)
    p = model.predict(valid)
    assert p.min() >= 0 and p.max() <= 1
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(valid["label"].to_numpy(), p) > 0.75
    assert model.best_iteration is not None and model.best_iteration < 50


def test_feature_importance_is_sorted_shares_summing_to_one() -> None:
    model = RankingModel(iterations=30, depth=4, thread_count=1).fit(_frame(800), FEATURES)
    imp = model.feature_importance()
    assert list(imp) == sorted(imp, key=lambda f: -imp[f])
    assert set(imp) == set(FEATURES)
    assert sum(imp.values()) == pytest.approx(1.0)
    assert list(imp)[0] == "x"  # the strongest planted signal
    assert imp["k"] < 0.15  # noise


def test_defaults_are_the_settings() -> None:
    p = RankingModel().params()
    assert p == {
        "kind": "classifier", "learning_rate": 0.2, "iterations": 100, "depth": 6,
        "scale_pos_weight": 10.0, "early_stopping_rounds": 5, "seed": 42, "eval_metric": None,
    }


def test_one_class_and_unfitted_errors(tmp_path) -> None:
    df = _frame(50).with_columns(pl.lit(0, dtype=pl.Int8).alias("label"))
    with pytest.raises(ValueError, match="one class"):
        RankingModel().fit(df, FEATURES)
    with pytest.raises(RuntimeError, match="not fitted"):
        RankingModel().predict(df)
    with pytest.raises(FileNotFoundError, match="ranking_model.json"):
        RankingModel.load(tmp_path)


def test_ranker_needs_contiguous_groups() -> None:
    df = _frame(60)
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=3)
    with pytest.raises(ValueError, match="contiguous"):
        RankingModel(kind="ranker", iterations=5, depth=2).fit(shuffled, FEATURES)


def test_missing_feature_column_is_named() -> None:
    model = RankingModel(iterations=5, depth=2, thread_count=1).fit(_frame(100), FEATURES)
    with pytest.raises(ValueError, match="'x'"):
        model.predict(_frame(10).drop("x"))


def test_categories_converted_once_give_the_same_scores_on_any_row_subset() -> None:
    """RankingModel.predict(rows, categories=...) with the categorical columns converted once
    for a bigger frame (categorical_frame) and taken for the rows scores exactly as predict(rows)."""
    from hmrec.ranking.model import categorical_frame

    rng = np.random.default_rng(0)
    n = 400
    df = pl.DataFrame({
        "x": rng.normal(size=n),
        "colour": pl.Series(rng.choice(["red", "blue", "green", None], n), dtype=pl.String),
        "shape": pl.Series(rng.choice(["a", "b"], n), dtype=pl.String),
        "label": (rng.random(n) < 0.3).astype(np.int8),
    })
    model = RankingModel(iterations=20, depth=3, thread_count=1).fit(df, ["x", "colour", "shape"])
    cats = categorical_frame(df, model.cat_features_)
    rows = np.flatnonzero(rng.random(n) < 0.4)
    subset = df[rows]
    np.testing.assert_array_equal(model.predict(subset, categories=cats.take(rows)), model.predict(subset))
    with pytest.raises(ValueError, match="rows"):
        model.predict(subset, categories=cats)
