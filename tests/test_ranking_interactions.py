"""Point-in-time interaction features: nothing on or after as_of is ever seen."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from hmrec.ranking.interactions import (
    DAYS_SINCE_NEVER,
    INTERACTION_FEATURES,
    add_interaction_features,
)

D = date


@pytest.fixture
def articles() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "article_id": ["a1", "a2", "a3", "a4"],
            "product_code": ["p1", "p1", "p2", "p3"],
            "index_group_name": ["Ladieswear", "Ladieswear", "Menswear", "Ladieswear"],
            "garment_group_name": ["Jersey", "Shoes", "Jersey", "Shoes"],
        }
    )


@pytest.fixture
def transactions() -> pl.DataFrame:
    rows = [
        (D(2020, 1, 1), "c1", "a1"),
        (D(2020, 1, 1), "c1", "a1"),  # identical row: two units, counts twice
        (D(2020, 1, 5), "c1", "a3"),
        (D(2020, 1, 9), "c2", "a1"),
        (D(2020, 1, 10), "c1", "a2"),  # ON the as_of day below: must not be seen
        (D(2020, 1, 12), "c1", "a4"),  # after: must not be seen
    ]
    return pl.DataFrame(rows, schema=["t_dat", "customer_id", "article_id"], orient="row")


def _one(df: pl.DataFrame, customer: str, article: str) -> dict:
    return df.filter((pl.col("customer_id") == customer) & (pl.col("article_id") == article)).row(
        0, named=True
    )


def test_values_as_of_a_date(transactions: pl.DataFrame, articles: pl.DataFrame) -> None:
    pairs = pl.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c3"],
            "article_id": ["a1", "a2", "a4", "a1"],
            "as_of": [D(2020, 1, 10)] * 4,
        }
    )
    out = add_interaction_features(pairs, transactions, articles)
    r = _one(out, "c1", "a1")
    assert r["customer_article_purchases"] == 2
    assert r["customer_product_purchases"] == 2  # a1 twice, a2 (same product) only on as_of
    assert r["days_since_article_purchase"] == 9
    assert r["days_since_product_purchase"] == 9
    assert r["customer_total_purchases"] == 3
    assert r["customer_index_group_share"] == pytest.approx(2 / 3)  # a1, a1 Ladieswear; a3 Menswear
    assert r["customer_garment_group_share"] == pytest.approx(1.0)  # a1, a1, a3 all Jersey
    assert r["article_sales_7d"] == 1  # window 2020-01-03..09: c2's a1 on the 9th
    assert r["article_sales_28d"] == 3

    r = _one(out, "c1", "a2")  # bought ON as_of: not seen
    assert r["customer_article_purchases"] == 0
    assert r["days_since_article_purchase"] == DAYS_SINCE_NEVER
    assert r["customer_product_purchases"] == 2  # via a1, same product p1
    assert r["article_sales_7d"] == 0 and r["article_sales_28d"] == 0

    r = _one(out, "c1", "a4")  # bought AFTER as_of: not seen
    assert r["customer_article_purchases"] == 0
    assert r["customer_garment_group_share"] == 0.0  # Shoes: none before as_of

    r = _one(out, "c3", "a1")  # no history at all
    assert r["customer_total_purchases"] == 0
    assert r["customer_index_group_share"] == 0.0
    assert r["days_since_product_purchase"] == DAYS_SINCE_NEVER


def test_later_as_of_sees_more_and_order_is_kept(transactions: pl.DataFrame, articles: pl.DataFrame) -> None:
    pairs = pl.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1"],
            "article_id": ["a2", "a2", "a1"],
            "as_of": [D(2020, 1, 11), D(2020, 1, 10), D(2020, 1, 2)],
            "extra": [1, 2, 3],
        }
    )
    out = add_interaction_features(pairs, transactions, articles)
    assert out["extra"].to_list() == [1, 2, 3]
    assert out["customer_article_purchases"].to_list() == [1, 0, 2]
    assert out["days_since_article_purchase"].to_list() == [1, DAYS_SINCE_NEVER, 1]
    assert out["customer_total_purchases"].to_list() == [4, 3, 2]


def test_sales_window_boundaries(articles: pl.DataFrame) -> None:
    tx = pl.DataFrame(
        {
            "t_dat": [D(2020, 3, 1), D(2020, 3, 2), D(2020, 3, 8), D(2020, 3, 9)],
            "customer_id": ["x"] * 4,
            "article_id": ["a1"] * 4,
        }
    )
    pairs = pl.DataFrame({"customer_id": ["y"], "article_id": ["a1"], "as_of": [D(2020, 3, 9)]})
    out = add_interaction_features(pairs, tx, articles)
    # 7-day window as of 3-9 is 3-2 .. 3-8 inclusive
    assert out["article_sales_7d"].item() == 2
    assert out["article_sales_28d"].item() == 3


def test_no_nulls_and_dtypes(transactions: pl.DataFrame, articles: pl.DataFrame) -> None:
    pairs = pl.DataFrame(
        {"customer_id": ["c1", "zz"], "article_id": ["unknown", "a3"], "as_of": [D(2020, 1, 10)] * 2}
    )
    out = add_interaction_features(pairs, transactions, articles)
    for c in INTERACTION_FEATURES:
        assert out[c].null_count() == 0, c


def test_pair_scorer_scores_every_row(transactions: pl.DataFrame, articles: pl.DataFrame) -> None:
    calls = []

    def scorer(cids: list[str], aids: list[str], as_of: date) -> np.ndarray:
        calls.append(as_of)
        return np.array([len(c) + int(a[1:]) for c, a in zip(cids, aids)], dtype=float)

    pairs = pl.DataFrame(
        {"customer_id": ["c1", "c22"], "article_id": ["a3", "a1"], "as_of": [D(2020, 1, 10), D(2020, 1, 2)]}
    )
    out = add_interaction_features(pairs, transactions, articles, pair_scorer=scorer)
    assert out["two_tower_score"].to_list() == [5.0, 4.0]
    assert sorted(calls) == [D(2020, 1, 2), D(2020, 1, 10)]


def test_pair_scorer_wrong_length_raises(transactions: pl.DataFrame, articles: pl.DataFrame) -> None:
    pairs = pl.DataFrame({"customer_id": ["c1"], "article_id": ["a3"], "as_of": [D(2020, 1, 10)]})
    with pytest.raises(ValueError, match="pair_scorer returned shape"):
        add_interaction_features(pairs, transactions, articles, pair_scorer=lambda c, a, d: np.zeros(3))


def test_missing_column_is_named(transactions: pl.DataFrame, articles: pl.DataFrame) -> None:
    pairs = pl.DataFrame({"customer_id": ["c1"], "article_id": ["a3"]})
    with pytest.raises(ValueError, match="as_of"):
        add_interaction_features(pairs, transactions, articles)
    with pytest.raises(ValueError, match="product_code"):
        add_interaction_features(
            pairs.with_columns(pl.lit(D(2020, 1, 1)).alias("as_of")),
            transactions,
            articles.drop("product_code"),
        )


def test_serving_path_with_given_sales_matches_the_batch_path(
    transactions: pl.DataFrame, articles: pl.DataFrame
) -> None:
    pairs = pl.DataFrame(
        {"customer_id": ["c1", "c1", "c1"], "article_id": ["a1", "a2", "a4"], "as_of": [D(2020, 1, 10)] * 3}
    )
    batch = add_interaction_features(pairs, transactions, articles)
    sales = batch.select("article_id", "article_sales_7d", "article_sales_28d")
    own_history = transactions.filter(pl.col("customer_id") == "c1")
    serving = add_interaction_features(pairs, own_history, articles, article_sales=sales.head(2))
    assert serving.drop("article_sales_7d", "article_sales_28d").equals(
        batch.drop("article_sales_7d", "article_sales_28d")
    )
    assert serving["article_sales_28d"].to_list() == [3, 0, 0]  # a4 not given -> 0
    with pytest.raises(ValueError, match="one date"):
        add_interaction_features(
            pairs.with_columns(pl.Series("as_of", [D(2020, 1, 10), D(2020, 1, 11), D(2020, 1, 10)])),
            own_history, articles, article_sales=sales,
        )
