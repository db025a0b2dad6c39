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

import numpy as np
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


class _EntityDays:
    """Purchase rows per (entity, day), in entity-code then day order (numpy arrays).

    Built by sorting ONE packed UInt64 key per transaction row (code * days + day) and
    counting runs: no hash table over the 31.8M rows, which made the two-column
    group-by and the per-entity windows the slowest part of the pipeline. With the
    integer code column (hmrec.features.ids.attach_codes) the codes are used as they
    are; without it the ids are ranked (sorted order), so the output order is the
    id order either way.
    """

    def __init__(self, transactions: pl.DataFrame | pl.LazyFrame, id_col: str):
        df = transactions.collect() if isinstance(transactions, pl.LazyFrame) else transactions
        code_col = id_col.removesuffix("_id") + "_idx"
        if code_col in df.columns:
            codes = df[code_col].cast(pl.UInt64).to_numpy()
        else:
            codes = (df[id_col].rank("dense").cast(pl.UInt64) - 1).to_numpy()
        days = df["t_dat"].cast(pl.Int32).to_numpy().astype(np.int64)  # days since 1970-01-01
        self.id_col = id_col
        if len(days) == 0:
            self.code = np.zeros(0, np.uint64)
            self.day = np.zeros(0, np.int64)
            self.n = np.zeros(0, np.int64)
            self.ids = pl.Series(id_col, [], dtype=pl.String)
            return
        d0, n_days = int(days.min()), int(days.max() - days.min() + 1)
        key = pl.Series(codes * np.uint64(n_days) + (days - d0).astype(np.uint64)).sort().to_numpy()
        starts = _run_starts(key)
        first = key[starts]
        self.code = first // np.uint64(n_days)
        self.day = (first % np.uint64(n_days)).astype(np.int64) + d0
        self.n = np.diff(np.append(starts, len(key)))
        # The id string of each output row: any transaction row of its code (16-byte views).
        row_of_code = np.zeros(int(codes.max()) + 1, dtype=np.int64)
        row_of_code[codes] = np.arange(len(codes))
        self.ids = df[id_col].gather(pl.Series(row_of_code[self.code]))


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values starts in a sorted array."""
    if len(sorted_values) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))


def _cumsum_within(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Running sum of `values` restarting at each True of `group_start` (contiguous groups)."""
    total = np.cumsum(values)
    first = np.maximum.accumulate(np.where(group_start, np.arange(len(values)), 0))
    return total - (total - values)[first]


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype(np.int32)).cast(pl.Date)


def build_article_sales_windows(
    transactions: pl.DataFrame | pl.LazyFrame, windows: Sequence[int] = DEFAULT_WINDOWS
) -> pl.LazyFrame:
    """Change points of each article's w-day sales counts (one column per window)."""
    ws = _check_windows(windows)
    cols = [sales_column(w) for w in ws]
    daily = _EntityDays(transactions, "article_id")
    if len(daily.n) == 0:
        return pl.LazyFrame(schema=article_sales_schema(ws))
    # Every window gains a day's sales n on s+1 and window w loses them again on s+w+1:
    # one delta row per (article, day, event), packed as article * span + day offset.
    d0 = int(daily.day.min())
    span = np.uint64(int(daily.day.max()) - d0 + max(ws) + 2)
    base = daily.code * span + (daily.day - d0).astype(np.uint64)
    shifts = [1] + [w + 1 for w in ws]
    keys = np.concatenate([base + np.uint64(sh) for sh in shifts])
    n = daily.n.astype(np.int64)
    zero = np.zeros_like(n)
    deltas = [np.concatenate([n] + [-n if w2 == w else zero for w2 in ws]) for w in ws]
    order = pl.Series(keys).arg_sort().to_numpy()
    keys = keys[order]
    starts = _run_starts(keys)
    sums = [np.add.reduceat(d[order], starts) for d in deltas]  # same article and day: one change
    keys = keys[starts]
    changed = np.logical_or.reduce([s != 0 for s in sums])  # a sale entering as another leaves
    keys = keys[changed]
    sums = [s[changed] for s in sums]
    article = keys // span
    new_article = np.concatenate([[True], article[1:] != article[:-1]]) if len(article) else np.zeros(0, bool)
    ids = daily.ids.gather(pl.Series(np.searchsorted(daily.code, article)))
    out = pl.DataFrame({
        "article_id": ids,
        VALID_FROM: _dates((keys % span).astype(np.int64) + d0),
        **{c: pl.Series(_cumsum_within(s, new_article)).cast(pl.Int32) for c, s in zip(cols, sums)},
    })
    return out.lazy()


def build_customer_activity(transactions: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """One row per customer and purchase day s, valid from s+1: counts so far and last purchase date."""
    daily = _EntityDays(transactions, "customer_id")
    if len(daily.n) == 0:
        return pl.LazyFrame(schema=CUSTOMER_ACTIVITY_SCHEMA)
    new_customer = np.concatenate([[True], daily.code[1:] != daily.code[:-1]])
    ones = np.ones(len(daily.n), dtype=np.int64)
    return pl.DataFrame({
        "customer_id": daily.ids,
        VALID_FROM: _dates(daily.day + 1),
        "purchase_count": pl.Series(_cumsum_within(daily.n.astype(np.int64), new_customer)).cast(pl.Int32),
        "purchase_days": pl.Series(_cumsum_within(ones, new_customer)).cast(pl.Int32),
        "last_purchase_date": _dates(daily.day),
    }).lazy()


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
