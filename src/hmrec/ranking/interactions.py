"""Point-in-time interaction features for (customer_id, article_id, as_of) rows.

Every feature of a row is computed from the transactions strictly BEFORE its
``as_of`` date, so a purchase on or after ``as_of`` (the one being predicted, or any
later one) is never seen. The same function serves training rows (positives and
negatives alike) and serving-time candidates, so the definitions cannot drift apart.

Missing values are filled the same way for every row, whatever its label:
counts are 0 when there is no history, ``days_since_*`` is ``DAYS_SINCE_NEVER``
when the customer never bought the article/product, and shares are 0.0 when the
customer has no history at all (``customer_total_purchases`` = 0 says so).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import polars as pl

#: "Never bought": larger than any real gap (the data spans about 2 years), so trees
#: read it as "very long ago" and it sorts at the far end for both classes.
DAYS_SINCE_NEVER = 9999

#: Scores (customer_id[i], article_id[i]) pairs as of a date, e.g. the two-tower dot
#: product. Must score ANY pair, not only retrieved ones, so positives and negatives
#: get the feature alike.
PairScorer = Callable[[list[str], list[str], date], np.ndarray]

#: Columns this module adds, in order (two_tower_score only when a scorer is given).
INTERACTION_FEATURES: tuple[str, ...] = (
    "customer_article_purchases",
    "customer_product_purchases",
    "days_since_article_purchase",
    "days_since_product_purchase",
    "customer_total_purchases",
    "customer_index_group_share",
    "customer_garment_group_share",
    "article_sales_7d",
    "article_sales_28d",
)
TWO_TOWER_SCORE = "two_tower_score"

_ARTICLE_KEYS = ("product_code", "index_group_name", "garment_group_name")


def _check_columns(df: pl.DataFrame | pl.LazyFrame, name: str, needed: tuple[str, ...]) -> None:
    schema = df.collect_schema() if isinstance(df, pl.LazyFrame) else df.schema
    missing = [c for c in needed if c not in schema]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(schema.names())}")


def _features_as_of(
    pairs: pl.DataFrame,
    history: pl.LazyFrame,
    article_keys: pl.LazyFrame,
    as_of: date,
    article_sales: pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Interaction features for pairs sharing one as_of date."""
    past = history.filter(pl.col("t_dat") < as_of)
    customers = pairs.select("customer_id").unique().lazy()
    mine = past.join(customers, on="customer_id", how="semi").join(
        article_keys, on="article_id", how="left"
    )
    days = (pl.lit(as_of) - pl.col("last")).dt.total_days()

    by_article = mine.group_by("customer_id", "article_id").agg(
        pl.len().alias("customer_article_purchases"), pl.col("t_dat").max().alias("last")
    ).with_columns(days.alias("days_since_article_purchase")).drop("last")
    by_product = mine.group_by("customer_id", "product_code").agg(
        pl.len().alias("customer_product_purchases"), pl.col("t_dat").max().alias("last")
    ).with_columns(days.alias("days_since_product_purchase")).drop("last")
    totals = mine.group_by("customer_id").agg(pl.len().alias("customer_total_purchases"))
    by_index = mine.group_by("customer_id", "index_group_name").agg(pl.len().alias("_n_index"))
    by_garment = mine.group_by("customer_id", "garment_group_name").agg(
        pl.len().alias("_n_garment")
    )
    if article_sales is None:
        sales_7 = (
            past.filter(pl.col("t_dat") >= as_of - timedelta(days=7))
            .group_by("article_id")
            .agg(pl.len().alias("article_sales_7d"))
        )
        sales_28 = (
            past.filter(pl.col("t_dat") >= as_of - timedelta(days=28))
            .group_by("article_id")
            .agg(pl.len().alias("article_sales_28d"))
        )
    else:
        sales_7 = article_sales.select("article_id", "article_sales_7d")
        sales_28 = article_sales.select("article_id", "article_sales_28d")

    out = (
        pairs.lazy()
        .join(article_keys, on="article_id", how="left")
        .join(by_article, on=["customer_id", "article_id"], how="left")
        .join(by_product, on=["customer_id", "product_code"], how="left", nulls_equal=False)
        .join(totals, on="customer_id", how="left")
        .join(by_index, on=["customer_id", "index_group_name"], how="left")
        .join(by_garment, on=["customer_id", "garment_group_name"], how="left")
        .join(sales_7, on="article_id", how="left")
        .join(sales_28, on="article_id", how="left")
    )
    total = pl.col("customer_total_purchases").fill_null(0)
    out = out.with_columns(
        pl.col("customer_article_purchases").fill_null(0).cast(pl.Int32),
        pl.col("customer_product_purchases").fill_null(0).cast(pl.Int32),
        pl.col("days_since_article_purchase").fill_null(DAYS_SINCE_NEVER).cast(pl.Int32),
        pl.col("days_since_product_purchase").fill_null(DAYS_SINCE_NEVER).cast(pl.Int32),
        total.cast(pl.Int32).alias("customer_total_purchases"),
        pl.when(total > 0)
        .then(pl.col("_n_index").fill_null(0) / total)
        .otherwise(0.0)
        .cast(pl.Float32)
        .alias("customer_index_group_share"),
        pl.when(total > 0)
        .then(pl.col("_n_garment").fill_null(0) / total)
        .otherwise(0.0)
        .cast(pl.Float32)
        .alias("customer_garment_group_share"),
        pl.col("article_sales_7d").fill_null(0).cast(pl.Int32),
        pl.col("article_sales_28d").fill_null(0).cast(pl.Int32),
    )
    return out.select("_row", *INTERACTION_FEATURES).collect()


def add_interaction_features(
    pairs: pl.DataFrame,
    transactions: pl.DataFrame | pl.LazyFrame,
    articles: pl.DataFrame | pl.LazyFrame,
    pair_scorer: PairScorer | None = None,
    article_sales: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Return `pairs` (same rows, same order) with the interaction features added.

    pairs: customer_id, article_id (String) and as_of (Date), any other columns kept.
    transactions: t_dat (Date), customer_id, article_id — the purchase history; only
    rows with t_dat < as_of are used for each row.
    articles: article_id, product_code, index_group_name, garment_group_name.
    pair_scorer: when given, adds ``two_tower_score`` for every row (Float32).
    article_sales: optional article_id, article_sales_7d, article_sales_28d as of the
    rows' date (e.g. from the article_sales_windows group, whose windows are the same
    [as_of-w, as_of-1] days). Serving uses it with only the customer's own history as
    `transactions`, instead of scanning everyone's purchases per request. With it, all
    rows must share one as_of.

    Work is done once per distinct as_of date, so callers should keep those few
    (e.g. one per weekly window), which is what the ranking dataset does.
    """
    _check_columns(pairs, "pairs", ("customer_id", "article_id", "as_of"))
    _check_columns(transactions, "transactions", ("t_dat", "customer_id", "article_id"))
    _check_columns(articles, "articles", ("article_id", *_ARTICLE_KEYS))
    produced = (*INTERACTION_FEATURES, TWO_TOWER_SCORE) if pair_scorer else INTERACTION_FEATURES
    clash = [c for c in produced if c in pairs.columns]
    if clash:
        raise ValueError(f"pairs already has feature column(s) {clash}")
    if pairs["as_of"].null_count():
        raise ValueError("pairs has null as_of; every row needs the date its features are as of")
    sales = None
    if article_sales is not None:
        _check_columns(article_sales, "article_sales", ("article_id", "article_sales_7d", "article_sales_28d"))
        if pairs["as_of"].n_unique() > 1:
            raise ValueError("article_sales holds counts as of one date; pairs span several as_of dates")
        sales = article_sales.lazy().unique("article_id")

    history = transactions.lazy().select("t_dat", "customer_id", "article_id")
    article_keys = articles.lazy().select("article_id", *_ARTICLE_KEYS).unique("article_id")
    indexed = pairs.with_row_index("_row")
    parts: list[pl.DataFrame] = []
    for as_of in indexed["as_of"].unique().sort().to_list():
        group = indexed.filter(pl.col("as_of") == as_of).select(
            "_row", "customer_id", "article_id"
        )
        feats = _features_as_of(group, history, article_keys, as_of, sales)
        if pair_scorer is not None:
            feats = feats.join(group.select("_row", "customer_id", "article_id"), on="_row")
            scores = np.asarray(
                pair_scorer(feats["customer_id"].to_list(), feats["article_id"].to_list(), as_of),
                dtype=np.float32,
            )
            if scores.shape != (feats.height,):
                raise ValueError(
                    f"pair_scorer returned shape {scores.shape} for {feats.height} pairs as of {as_of}"
                )
            feats = feats.drop("customer_id", "article_id").with_columns(
                pl.Series(TWO_TOWER_SCORE, scores, dtype=pl.Float32)
            )
        parts.append(feats)
    if not parts:
        empty = {c: pl.Int32 for c in INTERACTION_FEATURES}
        empty.update(customer_index_group_share=pl.Float32, customer_garment_group_share=pl.Float32)
        if pair_scorer is not None:
            empty[TWO_TOWER_SCORE] = pl.Float32
        return pairs.with_columns(pl.lit(None, dtype=d).alias(c) for c, d in empty.items())
    feats = pl.concat(parts).sort("_row")
    return indexed.join(feats, on="_row", how="left", maintain_order="left").drop("_row")
