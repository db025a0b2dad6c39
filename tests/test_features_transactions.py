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
    out = build_transactions(raw(ROWS)).collect()
    assert dict(out.schema) == SCHEMA
    assert out.height == len(ROWS)
    assert out.select(PRIMARY_KEY).is_duplicated().sum() == 0
    assert out["line_no"].to_list() == [0, 1, 0, 0, 2, 0]
    assert out["price"].to_list() == raw(ROWS)["price"].to_list()  # file order kept
    assert out["sales_channel_id"].to_list() == [2, 2, 1, 1, 1, 2]


def test_calendar_and_on_demand_columns():
    out = build_transactions(raw(ROWS)).collect()
    first, fourth = out.row(0, named=True), out.row(3, named=True)
    assert (first["year"], first["month"], first["day"], first["day_of_week"]) == (2020, 9, 20, 7)  # Sunday
    assert (fourth["day"], fourth["day_of_week"]) == (22, 2)  # Tuesday
    assert first["month_sin"] == month_sin(D1) and first["month_cos"] == month_cos(D1)


def test_line_no_is_deterministic_across_runs():
    a = build_transactions(raw(ROWS)).collect()
    b = build_transactions(raw(ROWS).lazy()).collect()
    assert a.equals(b)
