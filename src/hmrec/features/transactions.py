"""The `transactions` feature group: one row per raw purchase row, with calendar features.

Identical raw rows are real (several units bought the same day, ~9% of rows), so
nothing is merged away. ``line_no`` numbers the rows that share (t_dat,
customer_id, article_id) in file order, 0, 1, 2, ... That makes
[customer_id, article_id, t_dat, line_no] a unique primary key, so inserting the
same file again upserts onto the same rows instead of duplicating them.
"""

from __future__ import annotations

import numpy as np
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


KEY_TRIPLE = ["t_dat", "customer_id", "article_id"]


def line_numbers(transactions: pl.DataFrame) -> pl.Series:
    """0-based ordinal of each row among rows with the same (t_dat, customer_id, article_id).

    Cheap at 31.8M rows: rows are ordered by ONE 64-bit integer per row instead of
    three columns (a window over the string columns needs twice the memory). With
    customer_idx/article_idx present (hmrec.features.ids.attach_codes) the integer
    packs (customer, article, day) exactly. Without them it is a hash of the triple,
    which only finds the rows that MAY share their triple; the exact ordinal is then
    computed on those rows alone. Either way the result is exact, in file order.
    """
    n = transactions.height
    if n == 0:
        return pl.Series("line_no", [], dtype=pl.UInt32)
    cols = transactions.columns
    if "customer_idx" in cols and "article_idx" in cols:
        day = pl.col("t_dat").cast(pl.Int32).cast(pl.Int64)
        day0 = transactions["t_dat"].min().toordinal() - 719163  # days since 1970-01-01
        n_days = int(transactions["t_dat"].max().toordinal() - 719163 - day0 + 1)
        n_art = int(transactions["article_idx"].max()) + 1
        key = (pl.col("customer_idx").cast(pl.Int64) * n_art + pl.col("article_idx").cast(pl.Int64)) * n_days + (
            day - day0
        )
        if (int(transactions["customer_idx"].max()) + 1) * n_art * n_days < 2**62:
            return _ordinals_by_sorting(transactions.select(key.alias("k")).to_series())
    h = transactions.select(
        pl.col("customer_id").hash(seed=1) ^ pl.col("article_id").hash(seed=2) ^ pl.col("t_dat").hash(seed=3)
    ).to_series()
    candidates = h.is_duplicated()
    del h
    line_no = pl.zeros(n, dtype=pl.UInt32, eager=True).alias("line_no")
    if not candidates.any():
        return line_no
    rows = candidates.arg_true()
    ordinal = (
        transactions.select(KEY_TRIPLE)
        .filter(candidates)  # keeps file order
        .select(pl.int_range(pl.len(), dtype=pl.UInt32).over(KEY_TRIPLE))
        .to_series()
    )
    return line_no.scatter(rows, ordinal)


def _ordinals_by_sorting(key: pl.Series) -> pl.Series:
    """0-based ordinal of each row among the rows with the same key, in row order.

    A stable sort of (key, row number) puts each key's rows together in row order; the
    ordinal is then the position within the run. About 6x faster than a window
    (`int_range().over(key)`) at 31.8M rows, which builds a hash table of every key.
    """
    n = key.len()
    ordered = key.to_frame("k").with_row_index("i").sort("k", maintain_order=True)
    k = ordered["k"].to_numpy()
    pos = np.arange(n, dtype=np.int64 if n >= 2**31 else np.int32)
    run_start = np.maximum.accumulate(np.where(np.concatenate([[True], k[1:] != k[:-1]]), pos, 0))
    del k
    out = np.empty(n, dtype=np.uint32)
    out[ordered["i"].to_numpy()] = pos - run_start
    return pl.Series("line_no", out, dtype=pl.UInt32)


def build_transactions(transactions: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Raw typed transactions (hmrec.data.load_transactions) -> `transactions` group rows.

    Row order is kept (file order), which is what makes line_no deterministic.
    """
    if isinstance(transactions, pl.LazyFrame):
        transactions = transactions.collect()
    t = pl.col("t_dat")
    return transactions.with_columns(
        line_numbers(transactions),
        t.dt.year().cast(pl.Int16).alias("year"),
        t.dt.month().cast(pl.Int8).alias("month"),
        t.dt.day().cast(pl.Int8).alias("day"),
        t.dt.weekday().cast(pl.Int8).alias("day_of_week"),
        month_sin(t).alias("month_sin"),
        month_cos(t).alias("month_cos"),
    ).select(list(SCHEMA))
