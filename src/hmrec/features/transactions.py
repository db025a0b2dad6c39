"""The `transactions` feature group: one row per raw purchase row, with calendar features.

Identical raw rows are real (several units bought the same day, ~9% of rows), so
nothing is merged away. ``line_no`` numbers the rows that share (t_dat,
customer_id, article_id) in file order, 0, 1, 2, ... That makes
[customer_id, article_id, t_dat, line_no] a unique primary key, so inserting the
same file again upserts onto the same rows instead of duplicating them.
"""

from __future__ import annotations

import polars as pl

from hmrec.features.on_demand import month_cos, month_sin

GROUP_NAME = "transactions"
PRIMARY_KEY = ["customer_id", "article_id", "t_dat", "line_no"]
EVENT_TIME = "t_dat"

SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    "article_id": pl.String(),
    "t_dat": pl.Date(),
    "line_no": pl.UInt32(),
    "price": pl.Float32(),
    "sales_channel_id": pl.Int8(),
    "year": pl.Int16(),
    "month": pl.Int8(),
    "day": pl.Int8(),
    "day_of_week": pl.Int8(),
    "month_sin": pl.Float32(),
    "month_cos": pl.Float32(),
}

FEATURES: dict[str, str] = {
    "customer_id": "Customer id.",
    "article_id": "Article id.",
    "t_dat": "Purchase date (event time).",
    "line_no": "0-based ordinal among rows with the same (t_dat, customer_id, article_id), in file order.",
    "price": "Normalised price.",
    "sales_channel_id": "1 = store, 2 = online.",
    "year": "Year of t_dat.",
    "month": "Month of t_dat (1-12).",
    "day": "Day of month of t_dat.",
    "day_of_week": "ISO day of week of t_dat (1 = Monday ... 7 = Sunday).",
    "month_sin": "On-demand: sin(2*pi*month/12) (hmrec.features.on_demand.month_sin).",
    "month_cos": "On-demand: cos(2*pi*month/12) (hmrec.features.on_demand.month_cos).",
}


def build_transactions(transactions: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Raw typed transactions (hmrec.data.load_transactions) -> `transactions` group rows (lazy).

    Row order is kept (file order), which is what makes line_no deterministic.
    """
    t = pl.col("t_dat")
    return (
        transactions.lazy()
        .with_columns(
            pl.int_range(pl.len(), dtype=pl.UInt32).over(["t_dat", "customer_id", "article_id"]).alias("line_no"),
            t.dt.year().cast(pl.Int16).alias("year"),
            t.dt.month().cast(pl.Int8).alias("month"),
            t.dt.day().cast(pl.Int8).alias("day"),
            t.dt.weekday().cast(pl.Int8).alias("day_of_week"),
            month_sin(t).alias("month_sin"),
            month_cos(t).alias("month_cos"),
        )
        .select(list(SCHEMA))
    )
