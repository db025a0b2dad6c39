"""The leak check's building blocks against hand-computed values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from hmrec.ranking.leakage import (
    _encoded,
    feature_separation,
    null_pattern_leaks,
    null_shares,
)


def _frame() -> pl.DataFrame:
    # 4 positives, 6 negatives; "gap" is missing for 3/4 positives and 1/6 negatives
    return pl.DataFrame({
        "label": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        "gap": [None, None, None, 1.0, None, 2.0, 3.0, 4.0, 5.0, 6.0],
        "full": [float(i) for i in range(10)],
        "cat": pl.Series(["a", "a", None, "b", "a", "b", "b", None, "c", "c"], dtype=pl.Categorical),
    })


def test_null_shares_and_leaks_by_hand() -> None:
    df = _frame()
    shares = null_shares(df, ["gap", "full", "cat"])
    assert shares["gap"] == pytest.approx((0.75, 1 / 6))
    assert shares["full"] == (0.0, 0.0)
    assert shares["cat"] == pytest.approx((0.25, 1 / 6))
    assert null_pattern_leaks(df, ["gap", "full", "cat"]) == pytest.approx({"gap": 0.75 - 1 / 6, "cat": 0.25 - 1 / 6})
    assert null_pattern_leaks(df, ["gap", "full", "cat"], max_gap=0.1) == pytest.approx({"gap": 0.75 - 1 / 6})
    sep = feature_separation(df, ["gap", "full", "cat"])
    assert dict(zip(sep["feature"], sep["null_share_gap"])) == pytest.approx(
        {"gap": 0.75 - 1 / 6, "full": 0.0, "cat": 0.25 - 1 / 6})


def test_one_class_only_has_zero_shares() -> None:
    df = pl.DataFrame({"label": [0, 0, 0], "x": [None, 1.0, 2.0]})
    assert null_shares(df, ["x"]) == {"x": (0.0, pytest.approx(1 / 3))}
    assert null_pattern_leaks(df, ["x"]) == pytest.approx({"x": 1 / 3})


def test_target_encoding_is_out_of_fold_per_category() -> None:
    df = _frame()
    seed = 3
    fold = np.random.default_rng(seed).integers(0, 2, df.height)
    values = ["a", "a", "<null>", "b", "a", "b", "b", "<null>", "c", "c"]
    y = df["label"].to_numpy().astype(float)
    expected = np.empty(df.height)
    for f in (0, 1):
        fit = fold != f
        prior = y[fit].mean()
        for i in np.flatnonzero(fold == f):
            same = [j for j in np.flatnonzero(fit) if values[j] == values[i]]
            expected[i] = y[same].mean() if same else prior
    assert _encoded(df, "cat", "label", seed) == pytest.approx(expected)
