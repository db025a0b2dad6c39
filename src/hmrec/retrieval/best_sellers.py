"""Best sellers of the last N days: the one definition every stage ranks popularity by.

Why one function: "what sells now" is a candidate source (retrieval, ranking), a
baseline (retrieval metrics, the ranking report, the evaluation harness) and a score
feature (the popularity prior). Written separately, the window boundaries and the
tie-breaks drifted apart; here they are fixed once:

* the window is the ``days`` days before ``as_of``: ``as_of - days <= t_dat < as_of``
  (the request day itself is never counted); ``days=None`` is every day before ``as_of``;
* sales are transaction rows (several units of one article count several times);
* ties go to the larger all-time total before ``as_of`` when ``all_articles`` (so the
  list is as long as the catalogue ever sold), then to the smaller article id.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl


def best_seller_counts(
    transactions: pl.DataFrame | pl.LazyFrame,
    as_of: date,
    days: int | None,
    n: int | None = None,
    by: str | None = None,
    all_articles: bool = False,
) -> pl.DataFrame:
    """Articles by sales in the window, most sold first: columns ``[by], article_id, sales[, total]``.

    by: rank within each value of this column (groups ascending; the column must be in
    `transactions`). n: at most n rows (per group with `by`); None: all.
    all_articles: also list articles sold before the window but not in it (sales 0),
    with ``total`` (all sales before `as_of`) as the first tie-break.
    """
    keys = [by, "article_id"] if by else ["article_id"]
    before = transactions.lazy().filter(pl.col("t_dat") < as_of)
    if days is None:
        counts = before.group_by(keys).agg(pl.len().alias("sales"))
        order, descending = ["sales", "article_id"], [True, False]
    elif all_articles:
        start = as_of - timedelta(days=days)
        counts = before.group_by(keys).agg(
            (pl.col("t_dat") >= start).sum().alias("sales"), pl.len().alias("total"))
        order, descending = ["sales", "total", "article_id"], [True, True, False]
    else:
        start = as_of - timedelta(days=days)
        counts = before.filter(pl.col("t_dat") >= start).group_by(keys).agg(pl.len().alias("sales"))
        order, descending = ["sales", "article_id"], [True, False]
    if by:
        order, descending = [by, *order], [False, *descending]
    ranked = counts.sort(order, descending=descending)
    if n is not None:
        ranked = ranked.group_by(by, maintain_order=True).head(n) if by else ranked.head(n)
    return ranked.collect()


def best_sellers(
    transactions: pl.DataFrame | pl.LazyFrame, as_of: date, days: int | None, n: int | None = None
) -> list[str]:
    """The ids of `best_seller_counts` (no groups, only articles sold in the window)."""
    return best_seller_counts(transactions, as_of, days, n)["article_id"].to_list()
