"""Data fingerprint: order-independent, sensitive to every value, the schema and duplicates."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from hmrec.registry import fingerprint


@pytest.fixture
def df() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", None],
            "article_id": ["0108775015", "0108775015", "0200000001", "0300000002"],
            "price": [0.025, 0.5, None, 0.01],
            "t_dat": [dt.date(2020, 9, 1), dt.date(2020, 9, 2), dt.date(2020, 9, 2), dt.date(2020, 9, 3)],
        }
    )


def test_same_data_same_fingerprint_in_any_row_order(df):
    fp = fingerprint(df)
    assert fp.startswith("fp1-") and len(fp) == 4 + 32
    assert fingerprint(df.clone()) == fp
    assert fingerprint(df.reverse()) == fp
    assert fingerprint(df.sample(fraction=1.0, shuffle=True, seed=3)) == fp
    assert fingerprint(df.lazy()) == fp


def test_any_change_changes_the_fingerprint(df):
    fp = fingerprint(df)
    changed = [
        df.with_columns(pl.when(pl.col("customer_id") == "b").then(0.51).otherwise(pl.col("price")).alias("price")),
        df.with_columns(pl.col("customer_id").fill_null("d")),  # a null becomes a value
        df.head(3),  # a row less
        pl.concat([df, df.head(1)]),  # a duplicate row more (repeat purchases are real rows)
        df.rename({"price": "cost"}),  # a column name
        df.with_columns(pl.col("price").cast(pl.Float32)),  # a dtype
        df.select(["article_id", "customer_id", "price", "t_dat"]),  # column order
        df.with_columns(pl.col("t_dat") + dt.timedelta(days=1)),
    ]
    fps = [fingerprint(c) for c in changed]
    assert fp not in fps
    assert len(set(fps)) == len(fps)


def test_swapping_values_between_columns_of_a_row_is_detected():
    a = pl.DataFrame({"x": [1, 2], "y": [2, 1]})
    b = pl.DataFrame({"x": [2, 1], "y": [2, 1]})
    assert fingerprint(a) != fingerprint(b)


def test_empty_frames():
    e1 = pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)})
    e2 = pl.DataFrame({"b": pl.Series([], dtype=pl.Int64)})
    assert fingerprint(e1) != fingerprint(e2)
    assert fingerprint(pl.DataFrame()) == fingerprint(pl.DataFrame())


def test_rejects_other_types():
    with pytest.raises(TypeError, match="polars DataFrame or LazyFrame"):
        fingerprint({"a": [1]})  # type: ignore[arg-type]
