"""Feature views: persisted definitions, training data, time splits, metadata."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from hmrec.store import FeatureStore, FeatureStoreError, FeatureViewNotFound


def d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    store = FeatureStore(tmp_path / "store")
    tx = store.get_or_create_feature_group("transactions", primary_key=["tx_id"], event_time="t_dat")
    # one purchase per day from 2020-08-20 to 2020-09-22 (34 days), customer alternating 1/2
    days = pl.date_range(d("2020-08-20"), d("2020-09-22"), eager=True)
    tx.insert(
        pl.DataFrame(
            {
                "tx_id": range(days.len()),
                "customer_id": [1 + i % 2 for i in range(days.len())],
                "article_id": [100 + i % 3 for i in range(days.len())],
                "t_dat": days,
                "price": [float(i) for i in range(days.len())],
            }
        )
    )
    cust = store.get_or_create_feature_group("customers", primary_key=["customer_id"])
    cust.insert(pl.DataFrame({"customer_id": [1, 2], "age": [25.0, 52.0]}))
    return store


def query(store: FeatureStore):
    tx = store.get_feature_group("transactions", 1)
    cust = store.get_feature_group("customers", 1)
    return tx.select(["customer_id", "article_id", "t_dat", "price"]).join(cust.select(["age"]), on="customer_id")


def test_view_definition_persists_and_rebuilds_the_query(fs, tmp_path):
    fv = fs.get_or_create_feature_view("retrieval", query=query(fs), version=1, labels=["article_id"], description="d")
    again = FeatureStore(tmp_path / "store").get_feature_view("retrieval", 1)
    assert again.query.to_dict() == fv.query.to_dict()
    assert again.labels == ["article_id"]
    assert again.columns == ["customer_id", "article_id", "t_dat", "price", "age"]
    assert_frame_equal(again.training_data(), fv.training_data())
    assert fs.list_feature_views() == [("retrieval", 1)]
    stored = (tmp_path / "store" / "metadata" / "feature_views" / "retrieval_v1.json").read_text()
    assert '"group": "transactions"' in stored


def test_metadata_names_groups_versions_columns(fs):
    fv = fs.get_or_create_feature_view("retrieval", query=query(fs))
    m = fv.metadata
    assert (m["name"], m["version"]) == ("retrieval", 1)
    assert m["groups"] == [
        {"name": "transactions", "version": 1, "columns": ["customer_id", "article_id", "t_dat", "price"], "role": "root"},
        {"name": "customers", "version": 1, "columns": ["age"], "role": "plain_join"},
    ]
    assert m["join_keys"] == [{"group": "customers", "on": ["customer_id"], "kind": "plain", "prefix": None}]
    assert m["columns"] == ["customer_id", "article_id", "t_dat", "price", "age"]
    assert m["event_time"] == "t_dat"


def test_get_or_create_refuses_a_different_definition(fs):
    fs.get_or_create_feature_view("retrieval", query=query(fs))
    tx = fs.get_feature_group("transactions", 1)
    assert fs.get_or_create_feature_view("retrieval", query=query(fs)).name == "retrieval"
    assert fs.get_or_create_feature_view("retrieval").version == 1
    with pytest.raises(FeatureStoreError, match="different query"):
        fs.get_or_create_feature_view("retrieval", query=tx.select(["price"]))
    with pytest.raises(FeatureStoreError, match="labels"):
        fs.get_or_create_feature_view("retrieval", query=query(fs), labels=["price"])
    with pytest.raises(FeatureStoreError, match=r"labels \['nope'\] are not columns"):
        fs.get_or_create_feature_view("other", query=query(fs), labels=["nope"])


def test_unknown_view_error_lists_what_exists(fs):
    fs.get_or_create_feature_view("retrieval", query=query(fs))
    with pytest.raises(FeatureViewNotFound, match=r"version 2.*existing versions of 'retrieval': \[1\]"):
        fs.get_feature_view("retrieval", 2)
    with pytest.raises(FeatureViewNotFound, match="existing: retrieval v1"):
        fs.get_feature_view("ranking")


def test_training_data_start_inclusive_end_exclusive(fs):
    fv = fs.get_or_create_feature_view("retrieval", query=query(fs))
    td = fv.training_data(start=d("2020-09-01"), end=d("2020-09-03"))
    assert td["t_dat"].to_list() == [d("2020-09-01"), d("2020-09-02")]
    assert td["age"].to_list() == [25.0, 52.0]
    assert fv.training_data().height == 34


def test_default_time_split_is_last_7_days_test_previous_7_validation(fs):
    fv = fs.get_or_create_feature_view("retrieval", query=query(fs))
    train, val, test = fv.train_validation_test_split()
    # last day 2020-09-22 -> test 09-16..09-22 (7 days), validation 09-09..09-15, train ..09-08
    assert test["t_dat"].min() == d("2020-09-16") and test["t_dat"].max() == d("2020-09-22")
    assert val["t_dat"].min() == d("2020-09-09") and val["t_dat"].max() == d("2020-09-15")
    assert train["t_dat"].max() == d("2020-09-08") and train["t_dat"].min() == d("2020-08-20")
    assert (train.height, val.height, test.height) == (20, 7, 7)
    assert train.columns == val.columns == test.columns == fv.columns
    assert test["age"].null_count() == 0
    b = fv.split_bounds()
    assert (b.validation_start, b.test_start, b.test_end) == (d("2020-09-09"), d("2020-09-16"), d("2020-09-23"))


def test_explicit_split_dates_and_boundaries(fs):
    fv = fs.get_or_create_feature_view("retrieval", query=query(fs))
    train, val, test = fv.train_validation_test_split(
        validation_start=d("2020-09-01"), test_start=d("2020-09-10"), test_days=3
    )
    # a row dated exactly on a boundary belongs to the later window
    assert train["t_dat"].max() == d("2020-08-31")
    assert val["t_dat"].to_list()[0] == d("2020-09-01") and val["t_dat"].max() == d("2020-09-09")
    assert test["t_dat"].to_list() == [d("2020-09-10"), d("2020-09-11"), d("2020-09-12")]  # later rows: no split
    with pytest.raises(FeatureStoreError, match="after test_start"):
        fv.train_validation_test_split(validation_start=d("2020-09-12"), test_start=d("2020-09-10"))


def test_time_split_with_datetime_event_time(tmp_path):
    store = FeatureStore(tmp_path)
    g = store.get_or_create_feature_group("ev", primary_key=["id"], event_time="ts")
    ts = [dt.datetime(2020, 9, 15, 23, 59), dt.datetime(2020, 9, 16, 0, 0), dt.datetime(2020, 9, 22, 12)]
    g.insert(pl.DataFrame({"id": [1, 2, 3], "ts": ts}))
    fv = store.get_or_create_feature_view("ev", query=g.select(["id"]))
    train, val, test = fv.train_validation_test_split(test_days=7, validation_days=7)
    assert (train["id"].to_list(), val["id"].to_list(), test["id"].to_list()) == ([], [1], [2, 3])


def test_time_split_needs_event_time(fs):
    cust = fs.get_feature_group("customers", 1)
    fv = fs.get_or_create_feature_view("cust", query=cust.select(["age"]))
    with pytest.raises(FeatureStoreError, match="cannot be split by time; use train_test_split"):
        fv.train_validation_test_split()


def test_random_split_is_deterministic_and_complete(fs):
    fv = fs.get_or_create_feature_view("retrieval", query=query(fs))
    a_train, a_test = fv.train_test_split(test_size=0.25, seed=7)
    b_train, b_test = fv.train_test_split(test_size=0.25, seed=7)
    _, c_test = fv.train_test_split(test_size=0.25, seed=8)
    assert_frame_equal(a_test, b_test)
    assert a_test.height == 8 and a_train.height == 26
    assert sorted(a_train["price"].to_list() + a_test["price"].to_list()) == [float(i) for i in range(34)]
    assert a_test["price"].to_list() != c_test["price"].to_list()
    with pytest.raises(FeatureStoreError, match="test_size"):
        fv.train_test_split(test_size=1.5, seed=1)


@pytest.mark.parametrize("dtype", [pl.Date, pl.Datetime("us"), pl.Datetime("ms", "Europe/Stockholm")])
def test_split_by_time_sorted_slices_equal_filters(dtype):
    """A frame in time order is cut into slices; the result equals filtering an unsorted copy."""
    from hmrec.store.splits import TimeSplit, split_by_time

    start = dt.date(2020, 9, 1)
    days = sorted(start + dt.timedelta(days=i % 25) for i in range(200))
    df = pl.DataFrame({"t": days, "i": list(range(200))}).with_columns(pl.col("t").cast(dtype))
    bounds = TimeSplit(dt.date(2020, 9, 8), dt.date(2020, 9, 15), dt.date(2020, 9, 22))
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=1)
    for got, want in zip(split_by_time(df, "t", bounds), split_by_time(shuffled, "t", bounds)):
        assert got.equals(want.sort("i"))
    train, val, test = split_by_time(df, "t", bounds)
    assert (train.height, val.height, test.height) == (56, 56, 56)
    assert test["t"].cast(pl.Date).max() == dt.date(2020, 9, 21)  # rows on 22..25 belong to no split
