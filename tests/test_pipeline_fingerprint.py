"""The ranking step's data fingerprint, read a month at a time: content-bound, order-free."""

from __future__ import annotations

import datetime as dt

import polars as pl

from hmrec.pipelines.train import monthly_fingerprint


def _rows() -> pl.DataFrame:
    days = [dt.date(2020, 1, 30), dt.date(2020, 1, 31), dt.date(2020, 2, 1), dt.date(2020, 3, 15), dt.date(2020, 5, 2)]
    return pl.DataFrame({"customer_id": ["a", "b", "a", "c", "d"], "article_id": ["1", "2", "2", "3", "1"],
                         "t_dat": days})


def test_same_rows_any_order_same_fingerprint_and_only_rows_before_end_count() -> None:
    rows, end = _rows(), dt.date(2020, 4, 1)
    fp = monthly_fingerprint(rows.lazy(), end)
    assert fp.startswith("fp1-")
    assert monthly_fingerprint(rows.reverse().lazy(), end) == fp
    assert monthly_fingerprint(rows.head(4).lazy(), end) == fp  # the May row is after `end`
    assert monthly_fingerprint(rows.lazy(), dt.date(2020, 6, 1)) != fp


def test_any_changed_added_or_moved_row_changes_it() -> None:
    rows, end = _rows(), dt.date(2020, 4, 1)
    fp = monthly_fingerprint(rows.lazy(), end)
    changed = rows.with_columns(pl.when(pl.col("customer_id") == "c").then(pl.lit("x"))
                                .otherwise(pl.col("customer_id")).alias("customer_id"))
    duplicated = pl.concat([rows, rows.head(1)])
    moved = rows.with_columns(pl.when(pl.col("customer_id") == "b").then(pl.lit(dt.date(2020, 2, 2)))
                              .otherwise(pl.col("t_dat")).alias("t_dat"))  # into the next month
    found = {monthly_fingerprint(f.lazy(), end) for f in (changed, duplicated, moved)}
    assert len(found) == 3 and fp not in found


def test_no_rows_before_end_is_a_fingerprint_too() -> None:
    rows = _rows()
    empty = monthly_fingerprint(rows.lazy(), dt.date(2019, 1, 1))
    assert empty == monthly_fingerprint(rows.head(0).lazy(), dt.date(2030, 1, 1))
    assert empty != monthly_fingerprint(rows.lazy(), dt.date(2030, 1, 1))
