"""Time-windowed aggregates, stored so that a join as of day D sees only data before D.

Both groups use a change-point layout: a row ``(key, valid_from, values...)`` holds
the values that are true from day ``valid_from`` on, until the key's next row. The
values are computed from transactions strictly BEFORE ``valid_from``, so a label on
day D joined as-of-backward (latest row with valid_from <= D) sees purchases up to
D-1 only — never the label's own day, never the future.

* ``article_sales_windows`` — sales (rows) of an article in the last w days,
  w in (7, 28): the window as of day D is [D-w, D-1]. A sale on day s enters it on
  s+1 and leaves it on s+w+1, so a row exists only on days where a count changes
  (far fewer rows than article x day, and exact for every day). Before an article's
  first row the count is 0 (the join leaves null: fill with 0; `attach_article_sales`
  does that).
* ``customer_activity`` — per customer, on the day after each purchase day:
  number of purchase rows and purchase days so far, and the last purchase date.
  ``days_since_last_purchase`` is NOT stored (it changes every day); it is computed
  at join/request time as label date - last_purchase_date
  (hmrec.features.on_demand.days_since), which is exact for any date.

Aggregates are recomputed from all transactions on every run and overwrite the
previous table (a window's counts depend on every other row, so a row-wise upsert
would leave stale change points behind).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from hmrec.features.on_demand import days_since

VALID_FROM = "valid_from"
DEFAULT_WINDOWS: tuple[int, ...] = (7, 28)

ARTICLE_SALES_GROUP = "article_sales_windows"
ARTICLE_SALES_KEY = ["article_id", VALID_FROM]
CUSTOMER_ACTIVITY_GROUP = "customer_activity"
CUSTOMER_ACTIVITY_KEY = ["customer_id", VALID_FROM]


def sales_column(window: int) -> str:
    return f"sales_{window}d"


def article_sales_schema(windows: Sequence[int] = DEFAULT_WINDOWS) -> dict[str, pl.DataType]:
    return {"article_id": pl.String(), VALID_FROM: pl.Date(), **{sales_column(w): pl.Int32() for w in windows}}


def article_sales_features(windows: Sequence[int] = DEFAULT_WINDOWS) -> dict[str, str]:
    return {
        "article_id": "Article id.",
        VALID_FROM: "Event time: the counts hold from this day on (until the article's next row).",
        **{sales_column(w): f"Sales rows of the article in the {w} days before the as-of day (D-{w}..D-1)."
           for w in windows},
    }


CUSTOMER_ACTIVITY_SCHEMA: dict[str, pl.DataType] = {
    "customer_id": pl.String(),
    VALID_FROM: pl.Date(),
    "purchase_count": pl.Int32(),
    "purchase_days": pl.Int32(),
    "last_purchase_date": pl.Date(),
}
CUSTOMER_ACTIVITY_FEATURES: dict[str, str] = {
    "customer_id": "Customer id.",
    VALID_FROM: "Event time: the day after a purchase day; values hold until the next row.",
    "purchase_count": "Purchase rows of the customer before valid_from.",
    "purchase_days": "Distinct days with a purchase before valid_from.",
    "last_purchase_date": "Last purchase day before valid_from (days_since_last_purchase = D - this).",
}


def _check_windows(windows: Sequence[int]) -> tuple[int, ...]:
    ws = tuple(int(w) for w in windows)
    if not ws or any(w < 1 for w in ws) or len(set(ws)) != len(ws):
        raise ValueError(f"windows must be distinct positive day counts, got {windows!r}")
    return ws


def _daily_counts(transactions: pl.DataFrame | pl.LazyFrame, id_col: str) -> tuple[pl.LazyFrame, str]:
    """Rows per (entity, day) sorted by entity then day, and the column that names the entity.

    With the integer code column present (hmrec.features.ids.attach_codes) grouping,
    sorting and windows use it (several times cheaper than 64-character strings at
    31.8M rows) and the id string is carried along; codes follow the id order, so the
    output is the same either way.
    """
    lf = transactions.lazy()
    code = id_col.removesuffix("_id") + "_idx"
    if code in lf.collect_schema().names():
        daily = lf.group_by(code, "t_dat").agg(pl.col(id_col).first(), pl.len().cast(pl.Int32).alias("n"))
        return daily.sort(code, "t_dat"), code
    daily = lf.group_by(id_col, "t_dat").agg(pl.len().cast(pl.Int32).alias("n"))
    return daily.sort(id_col, "t_dat"), id_col


def build_article_sales_windows(
    transactions: pl.DataFrame | pl.LazyFrame, windows: Sequence[int] = DEFAULT_WINDOWS
) -> pl.LazyFrame:
    """Change points of each article's w-day sales counts (one column per window)."""
    ws = _check_windows(windows)
    cols = [sales_column(w) for w in ws]
    daily, key = _daily_counts(transactions, "article_id")
    ids = list(dict.fromkeys([key, "article_id"]))
    zero = pl.lit(0, dtype=pl.Int32)
    n = pl.col("n")
    # every window gains n on s+1 ...
    parts = [daily.select(*ids, (pl.col("t_dat") + pl.duration(days=1)).alias(VALID_FROM),
                          *[n.alias(c) for c in cols])]
    # ... and window w loses it again on s+w+1.
    for w, c in zip(ws, cols):
        parts.append(daily.select(*ids, (pl.col("t_dat") + pl.duration(days=w + 1)).alias(VALID_FROM),
                                  *[(-n if c2 == c else zero).alias(c2) for c2 in cols]))
    other = [c for c in ids if c != key]
    deltas = (
        pl.concat(parts)
        .group_by(key, VALID_FROM)
        .agg(*[pl.col(c).first() for c in other], *[pl.col(c).sum() for c in cols])
        .filter(pl.any_horizontal(pl.col(c) != 0 for c in cols))  # a sale entering as another leaves
        .sort(key, VALID_FROM)
    )
    return deltas.select(
        "article_id", VALID_FROM, *[pl.col(c).cum_sum().over(key).cast(pl.Int32) for c in cols]
    )


def build_customer_activity(transactions: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """One row per customer and purchase day s, valid from s+1: counts so far and last purchase date."""
    daily, key = _daily_counts(transactions, "customer_id")
    return daily.select(
        "customer_id",
        (pl.col("t_dat") + pl.duration(days=1)).alias(VALID_FROM),
        pl.col("n").cum_sum().over(key).cast(pl.Int32).alias("purchase_count"),
        pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over(key).alias("purchase_days"),
        pl.col("t_dat").alias("last_purchase_date"),
    )


def _as_of(labels: pl.DataFrame, changes: pl.DataFrame, key: str, time_col: str) -> pl.DataFrame:
    """Left as-of-backward join on (key, time): latest change with valid_from <= label time."""
    right = changes.rename({VALID_FROM: "__t"}).with_columns(pl.col("__t").cast(pl.Date)).sort("__t")
    left = labels.with_row_index("__row").with_columns(pl.col(time_col).cast(pl.Date).alias("__t")).sort("__t")
    joined = left.join_asof(right, on="__t", by=key, strategy="backward", check_sortedness=False)
    return joined.sort("__row").drop("__row", "__t")


def attach_article_sales(
    labels: pl.DataFrame, sales: pl.DataFrame, time_col: str = "t_dat"
) -> pl.DataFrame:
    """Add the sales_<w>d columns as of each label's day (0 before an article's first sale).

    Keeps the label rows and their order; ``labels`` needs article_id and ``time_col``.
    """
    cols = [c for c in sales.columns if c not in ("article_id", VALID_FROM)]
    out = _as_of(labels, sales, "article_id", time_col)
    return out.with_columns(pl.col(c).fill_null(0) for c in cols)


def attach_customer_activity(
    labels: pl.DataFrame, activity: pl.DataFrame, time_col: str = "t_dat"
) -> pl.DataFrame:
    """Add purchase_count, purchase_days (0 with no earlier purchase), last_purchase_date and
    days_since_last_purchase (null with no earlier purchase) as of each label's day."""
    out = _as_of(labels, activity, "customer_id", time_col)
    return out.with_columns(
        pl.col("purchase_count").fill_null(0),
        pl.col("purchase_days").fill_null(0),
        days_since(pl.col(time_col), pl.col("last_purchase_date")).alias("days_since_last_purchase"),
    )
