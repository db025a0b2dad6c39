"""Point-in-time aggregates: change points + as-of join == brute force, never see day D or later."""

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from hmrec.features.aggregates import (
    CUSTOMER_ACTIVITY_SCHEMA,
    article_sales_schema,
    attach_article_sales,
    attach_customer_activity,
    build_article_sales_windows,
    build_customer_activity,
)

START = date(2020, 1, 1)


def random_transactions(seed: int, n: int = 300, days: int = 60) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "t_dat": [START + timedelta(days=int(d)) for d in rng.integers(0, days, n)],
        "customer_id": [f"c{int(i)}" for i in rng.integers(0, 8, n)],
        "article_id": [f"{int(i):010d}" for i in rng.integers(0, 6, n)],
    }, schema={"t_dat": pl.Date, "customer_id": pl.String, "article_id": pl.String})


def all_label_days(tx: pl.DataFrame, key: str) -> pl.DataFrame:
    """Every key x every day from 3 days before the first sale to 40 days after the last."""
    days = [START + timedelta(days=d) for d in range(-3, 100)]
    return pl.DataFrame({key: sorted(tx[key].unique())}).join(
        pl.DataFrame({"t_dat": days}, schema={"t_dat": pl.Date}), how="cross")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_article_sales_as_of_equals_brute_force(seed):
    tx = random_transactions(seed)
    sales = build_article_sales_windows(tx).collect()
    assert dict(sales.schema) == article_sales_schema()
    labels = all_label_days(tx, "article_id")
    got = attach_article_sales(labels, sales)
    assert got.height == labels.height and got.select("article_id", "t_dat").equals(labels)
    rows = tx.select("article_id", "t_dat").rows()
    for art, d, s7, s28 in got.select("article_id", "t_dat", "sales_7d", "sales_28d").iter_rows():
        want7 = sum(1 for a, s in rows if a == art and d - timedelta(days=7) <= s <= d - timedelta(days=1))
        want28 = sum(1 for a, s in rows if a == art and d - timedelta(days=28) <= s <= d - timedelta(days=1))
        assert (s7, s28) == (want7, want28), (art, d)


def test_change_points_are_compact_and_end_at_zero():
    tx = random_transactions(0)
    sales = build_article_sales_windows(tx).collect()
    daily_pairs = tx.select("article_id", "t_dat").unique().height
    assert sales.height <= 3 * daily_pairs
    assert sales.select("article_id", "valid_from").is_duplicated().sum() == 0
    last = sales.group_by("article_id").agg(pl.all().sort_by("valid_from").last())
    assert last["sales_7d"].to_list() == [0] * last.height and last["sales_28d"].to_list() == [0] * last.height
    # consecutive rows of one article always differ (only real changes are stored)
    changed = sales.with_columns(
        pl.any_horizontal(pl.col(c).diff().over("article_id") != 0 for c in ("sales_7d", "sales_28d")).alias("ch"))
    assert changed["ch"].drop_nulls().all()


def test_same_day_sale_is_not_seen_by_a_label_that_day():
    tx = pl.DataFrame({"t_dat": [date(2020, 5, 10)] * 3, "customer_id": ["c", "c", "d"],
                       "article_id": ["0000000001"] * 3})
    sales = build_article_sales_windows(tx).collect()
    labels = pl.DataFrame({"article_id": ["0000000001"] * 4,
                           "t_dat": [date(2020, 5, 10), date(2020, 5, 11), date(2020, 5, 17), date(2020, 5, 18)]})
    got = attach_article_sales(labels, sales)
    assert got["sales_7d"].to_list() == [0, 3, 3, 0]
    assert got["sales_28d"].to_list() == [0, 3, 3, 3]
    act = attach_customer_activity(labels.with_columns(customer_id=pl.lit("c")), build_customer_activity(tx).collect())
    assert act["purchase_count"].to_list() == [0, 2, 2, 2]
    assert act["days_since_last_purchase"].to_list() == [None, 1, 7, 8]


@pytest.mark.parametrize("seed", [0, 3])
def test_customer_activity_as_of_equals_brute_force(seed):
    tx = random_transactions(seed)
    act = build_customer_activity(tx).collect()
    assert dict(act.schema) == CUSTOMER_ACTIVITY_SCHEMA
    labels = all_label_days(tx, "customer_id")
    got = attach_customer_activity(labels, act)
    rows = tx.select("customer_id", "t_dat").rows()
    for cust, d, cnt, ndays, last, since in got.select(
        "customer_id", "t_dat", "purchase_count", "purchase_days", "last_purchase_date", "days_since_last_purchase"
    ).iter_rows():
        before = [s for c, s in rows if c == cust and s < d]
        assert cnt == len(before)
        assert ndays == len(set(before))
        assert last == (max(before) if before else None)
        assert since == ((d - max(before)).days if before else None)


def test_label_order_and_extra_columns_kept():
    tx = random_transactions(5)
    labels = tx.select("customer_id", "article_id", "t_dat").with_row_index("i").reverse()
    got = attach_article_sales(labels, build_article_sales_windows(tx).collect())
    got = attach_customer_activity(got, build_customer_activity(tx).collect())
    assert got["i"].to_list() == labels["i"].to_list()
    assert (got["purchase_count"] >= 0).all()


def test_bad_windows_rejected():
    with pytest.raises(ValueError, match="windows"):
        build_article_sales_windows(random_transactions(0), windows=(7, 7))


def test_integer_codes_give_the_same_tables():
    from hmrec.features.ids import assign_codes, attach_codes

    tx = random_transactions(4)
    coded = attach_codes(tx, assign_codes(tx["customer_id"], "customer_id"), assign_codes(tx["article_id"], "article_id"))
    assert build_article_sales_windows(coded).collect().equals(build_article_sales_windows(tx).collect())
    assert build_customer_activity(coded).collect().equals(build_customer_activity(tx).collect())
