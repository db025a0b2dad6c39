"""The evaluation split: last 7 days are the test week, history is strictly before it."""

import datetime as dt

import polars as pl
import pytest

from hmrec.evaluation import EvaluationInputError, split_test_week


def tx(rows):
    """rows: (day 'YYYY-MM-DD', customer, article) -> raw-contract transactions frame."""
    return pl.DataFrame(
        {
            "t_dat": [dt.date.fromisoformat(r[0]) for r in rows],
            "customer_id": [r[1] for r in rows],
            "article_id": [r[2] for r in rows],
            "price": [0.02] * len(rows),
            "sales_channel_id": [2] * len(rows),
        },
        schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String, "price": pl.Float32, "sales_channel_id": pl.Int8},
    )


ROWS = [
    ("2020-09-01", "c1", "a1"),
    ("2020-09-15", "c1", "a2"),  # last day of history
    ("2020-09-16", "c1", "a3"),  # first test day
    ("2020-09-16", "c2", "a1"),
    ("2020-09-18", "c1", "a3"),  # same article again: counts once
    ("2020-09-20", "c1", "a1"),
    ("2020-09-22", "c2", "a1"),  # several units
    ("2020-09-22", "c2", "a1"),
]


def test_test_week_is_last_seven_days_and_history_is_before():
    split = split_test_week(tx(ROWS))
    assert split.test_start == dt.date(2020, 9, 16)
    assert split.test_end == dt.date(2020, 9, 23)
    assert split.history.height == 2
    assert split.history["t_dat"].max() == dt.date(2020, 9, 15)
    assert split.test.height == 6
    assert split.test_customers() == ["c1", "c2"]


def test_test_purchases_are_distinct_in_order_of_first_purchase():
    assert split_test_week(tx(ROWS)).test_purchases() == {"c1": ["a3", "a1"], "c2": ["a1"]}


def test_explicit_test_start_leaves_later_rows_out_of_both_parts():
    split = split_test_week(tx(ROWS), test_days=2, test_start="2020-09-15")
    assert split.history["t_dat"].to_list() == [dt.date(2020, 9, 1)]
    assert split.test["t_dat"].to_list() == [dt.date(2020, 9, 15), dt.date(2020, 9, 16), dt.date(2020, 9, 16)]


def test_no_history_or_missing_column_is_a_clear_error():
    with pytest.raises(EvaluationInputError, match="no rows before"):
        split_test_week(tx([("2020-09-20", "c1", "a1")]))
    with pytest.raises(EvaluationInputError, match="article_id"):
        split_test_week(tx(ROWS).drop("article_id"))
    with pytest.raises(EvaluationInputError, match="no rows in the test window"):
        split_test_week(tx(ROWS), test_start="2021-01-01")
