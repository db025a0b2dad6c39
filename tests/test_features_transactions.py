"""`transactions` group: every row kept, unique key via line_no, calendar features."""

from datetime import date

import polars as pl

from hmrec.features.on_demand import month_cos, month_sin
from hmrec.features.transactions import PRIMARY_KEY, SCHEMA, build_transactions

RAW_SCHEMA = {"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String,
              "price": pl.Float32, "sales_channel_id": pl.Int8}


def raw(rows):
    return pl.DataFrame([dict(zip(RAW_SCHEMA, r)) for r in rows], schema=RAW_SCHEMA)


D1, D2 = date(2020, 9, 20), date(2020, 9, 22)
ROWS = [
    (D1, "c1", "a1", 0.05, 2),
    (D1, "c1", "a1", 0.05, 2),  # identical: two units
    (D1, "c2", "a1", 0.05, 1),
    (D2, "c1", "a1", 0.04, 1),  # same pair, other day
    (D1, "c1", "a1", 0.03, 1),  # same key triple, other price/channel: third line of (D1, c1, a1)
    (D1, "c1", "a2", 0.05, 2),
]


def test_one_row_per_raw_row_and_unique_key():
    out = build_transactions(raw(ROWS))
    assert dict(out.schema) == SCHEMA
    assert out.height == len(ROWS)
    assert out.select(PRIMARY_KEY).is_duplicated().sum() == 0
    assert out["line_no"].to_list() == [0, 1, 0, 0, 2, 0]
    assert out["price"].to_list() == raw(ROWS)["price"].to_list()  # file order kept
    assert out["sales_channel_id"].to_list() == [2, 2, 1, 1, 1, 2]


def test_calendar_and_on_demand_columns():
    out = build_transactions(raw(ROWS))
    first, fourth = out.row(0, named=True), out.row(3, named=True)
    assert (first["year"], first["month"], first["day"], first["day_of_week"]) == (2020, 9, 20, 7)  # Sunday
    assert (fourth["day"], fourth["day_of_week"]) == (22, 2)  # Tuesday
    assert first["month_sin"] == month_sin(D1) and first["month_cos"] == month_cos(D1)


def test_line_no_is_deterministic_across_runs():
    a = build_transactions(raw(ROWS))
    b = build_transactions(raw(ROWS).lazy())
    assert a.equals(b)


def test_line_no_matches_a_plain_window_on_random_data():
    import numpy as np

    from hmrec.features.transactions import line_numbers

    rng = np.random.default_rng(7)
    n = 2000
    df = pl.DataFrame({
        "t_dat": (pl.Series(rng.integers(0, 5, n)) + 18000).cast(pl.Int32).cast(pl.Date),
        "customer_id": [f"c{int(i)}" for i in rng.integers(0, 20, n)],
        "article_id": [f"{int(i):010d}" for i in rng.integers(0, 10, n)],
    })
    want = df.select(pl.int_range(pl.len(), dtype=pl.UInt32).over(["t_dat", "customer_id", "article_id"]))
    assert line_numbers(df).to_list() == want.to_series().to_list()
    assert line_numbers(df.head(0)).len() == 0


def test_line_no_with_integer_codes_matches_a_plain_window():
    import numpy as np

    from hmrec.features.ids import assign_codes, attach_codes
    from hmrec.features.transactions import line_numbers

    rng = np.random.default_rng(8)
    n = 3000
    df = pl.DataFrame({
        "t_dat": (pl.Series(rng.integers(0, 9, n)) + 18000).cast(pl.Int32).cast(pl.Date),
        "customer_id": [f"c{int(i):03d}" for i in rng.integers(0, 30, n)],
        "article_id": [f"{int(i):010d}" for i in rng.integers(0, 12, n)],
        "price": pl.Series(rng.random(n), dtype=pl.Float32),
        "sales_channel_id": pl.Series(rng.integers(1, 3, n), dtype=pl.Int8),
    })
    coded = attach_codes(df, assign_codes(df["customer_id"], "customer_id"), assign_codes(df["article_id"], "article_id"))
    assert coded.select(df.columns).equals(df)  # values unchanged, order kept
    want = df.select(pl.int_range(pl.len(), dtype=pl.UInt32).over(["t_dat", "customer_id", "article_id"]))
    assert line_numbers(coded).to_list() == want.to_series().to_list()
    assert build_transactions(coded).equals(build_transactions(df))
