"""Purchases from the service's events log reach the `transactions` group exactly once."""

import datetime as dt

import polars as pl
import pytest

from hmrec.config import Settings
from hmrec.data import generate, load_raw
from hmrec.features.errors import FeatureInputError
from hmrec.pipelines.features import run_feature_pipeline
from hmrec.store import FeatureStore
from hmrec.store.events_log import EventLog, ingested_seq, pending_events

NEW_CUSTOMER = "f" * 64


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    generate(d, n_customers=40, seed=5)
    return d


def _transactions(s: Settings) -> pl.DataFrame:
    return FeatureStore(s.store_dir).get_feature_group("transactions").read()


def _event_rows(tx: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    return tx.filter(pl.col("t_dat") == day).sort("customer_id", "article_id", "line_no")


@pytest.mark.parametrize("mode", ["overwrite", "upsert"])
def test_logged_purchases_are_ingested_once_and_survive_rebuilds(tmp_path, data_dir, mode):
    s = Settings(HOME_DIR=tmp_path / "home", DATA_DIR=data_dir)
    raw = load_raw(data_dir)
    known = raw.customers["customer_id"][0]
    art1, art2 = raw.articles["article_id"][0], raw.articles["article_id"][1]
    day = raw.transactions["t_dat"].max() + dt.timedelta(days=3)  # a day with no raw rows

    log = EventLog(s.store_dir)
    log.append("purchase", known, art1, day, price=0.03, sales_channel_id=2)
    log.append("click", known, art2, day)  # clicks are not purchases
    log.append("purchase", known, art1, day, price=0.03, sales_channel_id=2)  # a second unit: a real row
    log.append("purchase", NEW_CUSTOMER, art2, day, price=None, sales_channel_id=None)
    log.close()

    first = run_feature_pipeline(s, mode=mode)
    assert first.events == {"event_purchases": 3, "new_customers": 1, "dropped_unknown_article": 0, "log_seq": 4}
    tx = _transactions(s)
    assert tx.height == raw.transactions.height + 3
    rows = _event_rows(tx, day)
    assert rows.select("customer_id", "article_id", "line_no", "price", "sales_channel_id").rows() == [
        (known, art1, 0, pytest.approx(0.03), 2),
        (known, art1, 1, pytest.approx(0.03), 2),
        (NEW_CUSTOMER, art2, 0, None, None),
    ]
    assert ingested_seq(s.store_dir) == 4 and pending_events(s.store_dir) == []

    # The cold-start customer became a customer with unknown attributes, and has an id code.
    fs = FeatureStore(s.store_dir)
    cust = fs.get_feature_group("customers").read().filter(pl.col("customer_id") == NEW_CUSTOMER)
    assert cust.select("age_missing", "age_group", "club_member_status", "fashion_news_frequency").row(0) == (
        1, "UNKNOWN", "ABSENT", "NONE")
    ids = fs.get_feature_group("customer_ids").read()
    assert ids.filter(pl.col("customer_id") == NEW_CUSTOMER)["customer_idx"].to_list() == [raw.customers.height]
    # The aggregates count them (the day after the purchase day).
    act = fs.get_feature_group("customer_activity").read().filter(
        (pl.col("customer_id") == known) & (pl.col("valid_from") == day + dt.timedelta(days=1)))
    assert act["purchase_count"].item() == raw.transactions.filter(pl.col("customer_id") == known).height + 2

    # A second run (the log unchanged, nothing pending) adds nothing and loses nothing.
    second = run_feature_pipeline(s, mode=mode)
    assert second.events["event_purchases"] == 3
    tx2 = _transactions(s)
    assert tx2.height == tx.height
    assert _event_rows(tx2, day).equals(rows)
    assert ingested_seq(s.store_dir) == 4

    # A new event after that: added once, earlier ones keep their keys.
    log = EventLog(s.store_dir)
    log.open()
    log.append("purchase", known, art1, day, price=0.05, sales_channel_id=1)
    log.close()
    run_feature_pipeline(s, mode=mode)
    rows3 = _event_rows(_transactions(s), day)
    assert rows3.height == 4
    assert rows3.filter(pl.col("customer_id") == known)["line_no"].to_list() == [0, 1, 2]
    assert rows3.filter(pl.col("line_no") == 2)["price"].item() == pytest.approx(0.05)
    assert ingested_seq(s.store_dir) == 5


def test_a_failed_run_leaves_the_events_pending(tmp_path, data_dir):
    s = Settings(HOME_DIR=tmp_path / "home", DATA_DIR=data_dir)
    log = EventLog(s.store_dir)
    log.append("purchase", "a" * 64, "0000000001", dt.date(2020, 9, 23), price=0.01, sales_channel_id=2)
    log.close()
    with pytest.raises(FeatureInputError, match=r"events\.jsonl: column 'article_id', row 1: value '0000000001'"):
        run_feature_pipeline(s)
    assert ingested_seq(s.store_dir) == 0 and len(pending_events(s.store_dir)) == 1
    assert FeatureStore(s.store_dir).list_feature_groups() == []  # nothing written

    # With DROP_UNKNOWN_REFERENCES the event is left out (counted) and the log marked read.
    s2 = Settings(HOME_DIR=tmp_path / "home", DATA_DIR=data_dir, DROP_UNKNOWN_REFERENCES=True)
    summary = run_feature_pipeline(s2)
    assert summary.events["dropped_unknown_article"] == 1 and summary.events["event_purchases"] == 0
    assert ingested_seq(s.store_dir) == 1
