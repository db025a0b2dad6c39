"""Queries: select/join, point-in-time correctness on hand-made tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmrec.store import FeatureStore, FeatureStoreError

D = dt.date(2020, 9, 1)


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    return FeatureStore(tmp_path / "store")


@pytest.fixture
def labels(fs):
    """Purchases (the root): customer 1 buys on day 5, 10 and 3 (not in time order), customer 2 on day 5."""
    g = fs.get_or_create_feature_group("tx", primary_key=["tx_id"], event_time="t_dat")
    g.insert(
        pl.DataFrame(
            {
                "tx_id": [0, 1, 2, 3, 4],
                "customer_id": [1, 1, 2, 1, 3],
                "t_dat": [day(5), day(10), day(5), day(3), day(7)],
                "price": [0.1, 0.2, 0.3, 0.4, 0.5],
            }
        )
    )
    return g


@pytest.fixture
def counts(fs):
    """A time-versioned feature: customer 1's count changes on day 3, 5 (same day as a label) and 8."""
    g = fs.get_or_create_feature_group("cust_counts", primary_key=["customer_id", "as_of"], event_time="as_of")
    g.insert(
        pl.DataFrame(
            {
                "customer_id": [1, 1, 1, 2, 1],
                "as_of": [day(8), day(3), day(5), day(6), day(1)],
                "n_purchases": [30, 10, 20, 99, 1],
            }
        )
    )
    return g


def test_point_in_time_join_sees_the_latest_value_at_or_before_the_label_time(labels, counts):
    q = labels.select(["tx_id", "customer_id", "t_dat"]).join(counts.select(["n_purchases"]), on="customer_id")
    got = q.read()
    assert got.columns == ["tx_id", "customer_id", "t_dat", "n_purchases"]
    # root order is kept; every label row is kept
    assert got["tx_id"].to_list() == [0, 1, 2, 3, 4]
    assert dict(zip(got["tx_id"], got["n_purchases"])) == {
        0: 20,  # day 5: the update made on day 5 counts ("at or before"); day 8's is not seen
        1: 30,  # day 10: latest is day 8
        2: None,  # customer 2's only value is from day 6, after the label on day 5: not seen
        3: 10,  # day 3: equal time counts; day 5 and 8 are in the future
        4: None,  # customer 3 has no features at all: null, row kept
    }


def test_plain_join_without_event_time_on_the_right(fs, labels):
    cust = fs.get_or_create_feature_group("customers", primary_key=["customer_id"])
    cust.insert(pl.DataFrame({"customer_id": [2, 1], "age": [30.0, 20.0], "club": ["A", "B"]}))
    got = labels.select(["tx_id"]).join(cust.select(["customer_id", "age"]), on="customer_id").read()
    assert got.columns == ["tx_id", "age"]
    assert got.rows() == [(0, 20.0), (1, 20.0), (2, 30.0), (3, 20.0), (4, None)]


def test_root_without_event_time_takes_the_latest_feature_row(fs, counts):
    cust = fs.get_or_create_feature_group("customers", primary_key=["customer_id"])
    cust.insert(pl.DataFrame({"customer_id": [3, 1, 2], "age": [1.0, 2.0, 3.0]}))
    q = cust.select(["customer_id", "age"]).join(counts.select(["n_purchases", "as_of"]), on="customer_id")
    assert q.kind(q.joins[0]) == "latest"
    assert q.read().rows() == [(3, 1.0, None, None), (1, 2.0, 30, day(8)), (2, 3.0, 99, day(6))]


def test_join_on_event_time_column_is_an_exact_join(labels, fs):
    daily = fs.get_or_create_feature_group("daily", primary_key=["customer_id", "day"], event_time="day")
    daily.insert(pl.DataFrame({"customer_id": [1, 1], "day": [day(4), day(5)], "v": [4, 5]}))
    root = labels.select(["tx_id", "customer_id", "t_dat"])
    with pytest.raises(FeatureStoreError, match="not available on the left"):
        root.join(daily.select(["v"]), on=["customer_id", "day"])
    # a PIT join sees day 4's value for day-5 labels only if day 5 had none; here day 5 exists
    got = root.join(daily.select(["v"]), on="customer_id").read()
    assert got["v"].to_list() == [5, 5, None, None, None]


def test_datetime_features_against_date_labels_compare_at_midnight(labels, fs):
    g = fs.get_or_create_feature_group("ts_feat", primary_key=["customer_id", "ts"], event_time="ts")
    g.insert(
        pl.DataFrame(
            {
                "customer_id": [1, 1],
                "ts": [dt.datetime(2020, 9, 4, 23, 0), dt.datetime(2020, 9, 6, 0, 0)],  # day 3 23:00, day 5 00:00
                "v": [1, 2],
            }
        )
    )
    got = labels.select(["tx_id"]).join(g.select(["v"]), on="customer_id").read()
    # a day-3 label is day 3 at 00:00, so the value stamped day 3 23:00 is still in its future
    assert got["v"].to_list() == [2, 2, None, None, None]


def test_chained_joins_and_prefix(fs, labels, counts):
    cust = fs.get_or_create_feature_group("customers", primary_key=["customer_id"])
    cust.insert(pl.DataFrame({"customer_id": [1, 2, 3], "segment": [10, 20, 30]}))
    seg = fs.get_or_create_feature_group("segments", primary_key=["segment"])
    seg.insert(pl.DataFrame({"segment": [10, 20], "name": ["gold", "silver"]}))
    q = (
        labels.select(["tx_id", "price"])
        .join(cust.select(["segment"]), on="customer_id")
        .join(seg.select(["name"]), on="segment", prefix="seg_")
        .join(counts.select(["n_purchases", "as_of"]), on="customer_id", prefix="c_")
    )
    assert q.columns == ["tx_id", "price", "segment", "seg_name", "c_n_purchases", "c_as_of"]
    got = q.read()
    assert got["seg_name"].to_list() == ["gold", "gold", "silver", "gold", None]
    assert got["c_n_purchases"].to_list() == [20, 30, None, 10, None]
    assert got["c_as_of"].to_list() == [day(5), day(8), None, day(3), None]


def test_join_validation_errors(fs, labels, counts):
    cust = fs.get_or_create_feature_group("customers", primary_key=["customer_id"])
    cust.insert(pl.DataFrame({"customer_id": [1], "price": [1.0], "k": ["1"]}))
    root = labels.select(["tx_id", "price"])
    with pytest.raises(FeatureStoreError, match=r"repeat column\(s\) \['price'\]"):
        root.join(cust.select(["price"]), on="customer_id")
    assert root.join(cust.select(["price"]), on="customer_id", prefix="c_").columns == ["tx_id", "price", "c_price"]
    with pytest.raises(FeatureStoreError, match="is not a column of"):
        root.join(cust.select(["price"]), on="tx_id")
    wide = fs.get_or_create_feature_group("wide", primary_key=["customer_id", "k"])
    wide.insert(pl.DataFrame({"customer_id": [1], "k": [1], "x": [1]}))
    with pytest.raises(FeatureStoreError, match=r"does not cover its primary key"):
        root.join(wide.select(["x"]), on="customer_id")
    strkey = fs.get_or_create_feature_group("strkey", primary_key=["customer_id"])
    strkey.insert(pl.DataFrame({"customer_id": ["1"], "y": [1]}))
    with pytest.raises(FeatureStoreError, match="type Int64 on the left, String"):
        root.join(strkey.select(["y"]), on="customer_id")
    with pytest.raises(FeatureStoreError, match="without joins"):
        root.join(cust.select(["k"]).join(counts.select(["n_purchases"]), on="customer_id"), on="customer_id")


def test_time_filter_start_inclusive_end_exclusive(labels, counts):
    q = labels.select(["tx_id"]).join(counts.select(["n_purchases"]), on="customer_id")
    assert q.read(start=day(5), end=day(10))["tx_id"].to_list() == [0, 2, 4]
    assert q.read(start=day(5), end=day(10))["n_purchases"].to_list() == [20, None, None]


def test_empty_root_gives_empty_frame_with_columns(fs, counts):
    g = fs.get_or_create_feature_group("tx2", primary_key=["id"], event_time="t", schema={"id": pl.Int64, "customer_id": pl.Int64, "t": pl.Date})
    got = g.select(["id"]).join(counts.select(["n_purchases"]), on="customer_id").read()
    assert got.shape == (0, 2)
    assert got.schema == {"id": pl.Int64, "n_purchases": pl.Int64}


def _brute_force(left: pl.DataFrame, right: pl.DataFrame) -> list:
    out = []
    for k, t in left.select(["k", "t"]).iter_rows():
        cands = [(rt, v) for rk, rt, v in right.iter_rows() if rk == k and rt <= t]
        out.append(max(cands)[1] if cands else None)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    left=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20)), min_size=1, max_size=25),
    right=st.dictionaries(st.tuples(st.integers(0, 4), st.integers(0, 20)), st.integers(-100, 100), max_size=25),
)
def test_point_in_time_join_matches_brute_force(tmp_path_factory, left, right):
    fs = FeatureStore(tmp_path_factory.mktemp("pit"))
    lg = fs.get_or_create_feature_group("l", primary_key=["id"], event_time="t")
    rg = fs.get_or_create_feature_group(
        "r", primary_key=["k", "t"], event_time="t", schema={"k": pl.Int64, "t": pl.Date, "v": pl.Int64}
    )
    ldf = pl.DataFrame({"id": range(len(left)), "k": [k for k, _ in left], "t": [day(t) for _, t in left]})
    rdf = pl.DataFrame(
        {"k": [k for k, _ in right], "t": [day(t) for _, t in right], "v": list(right.values())},
        schema={"k": pl.Int64, "t": pl.Date, "v": pl.Int64},
    )
    lg.insert(ldf)
    if rdf.height:
        rg.insert(rdf)
    got = lg.select(["id", "k", "t"]).join(rg.select(["v"]), on="k").read()
    assert got["id"].to_list() == list(range(len(left)))
    assert got["v"].to_list() == _brute_force(ldf, rdf)


def _string_key_groups(fs, root_keys, right_keys, tag):
    """Root with String customer ids (some null / unknown / repeated) and a customers group."""
    root = fs.get_or_create_feature_group(f"root_{tag}", primary_key=["row"], event_time="t_dat")
    root.insert(pl.DataFrame({"row": list(range(len(root_keys))), "customer_id": root_keys,
                              "t_dat": [day(i % 9) for i in range(len(root_keys))]},
                             schema={"row": pl.Int64, "customer_id": pl.String, "t_dat": pl.Date}))
    cust = fs.get_or_create_feature_group(f"cust_{tag}", primary_key=["customer_id"])
    cust.insert(pl.DataFrame({"customer_id": right_keys, "age": [float(20 + i) for i in range(len(right_keys))],
                              "status": [f"s{i % 3}" for i in range(len(right_keys))]},
                             schema={"customer_id": pl.String, "age": pl.Float64, "status": pl.String}))
    return root, cust


def _expected_left_join(root, cust) -> pl.DataFrame:
    return root.read(["row", "customer_id", "t_dat"]).join(
        cust.read(["customer_id", "age", "status"]), on="customer_id", how="left", maintain_order="left")


@pytest.mark.parametrize("case", ["all_known", "unknown_and_null"])
def test_string_key_lookup_join_equals_a_hash_left_join(fs, case):
    ids = [c * 64 for c in "abcdef"]
    root_keys = ids[:4] * 3 + ids[:2]
    if case == "unknown_and_null":
        root_keys = root_keys + ["z" * 64, None, ids[0]]
    root, cust = _string_key_groups(fs, root_keys, ids[::-1], case)
    q = root.select(["row", "customer_id", "t_dat"]).join(cust.select(["age", "status"]), on="customer_id")
    got = q.read()
    assert got.equals(_expected_left_join(root, cust))
    assert got["customer_id"].to_list() == root_keys  # keys keep their values (and order)
    if case == "unknown_and_null":
        assert got.filter(pl.col("customer_id") == "z" * 64)["age"].to_list() == [None]
    # A time window and the event-time column come through the lookup path too.
    part = q.execute(start=day(2), end=day(5), with_event_time=True)
    assert part.drop("__hmrec_event_time__").equals(
        _expected_left_join(root, cust).filter((pl.col("t_dat") >= day(2)) & (pl.col("t_dat") < day(5))))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    root_idx=st.lists(st.integers(min_value=-1, max_value=7), min_size=0, max_size=30),
    n_right=st.integers(min_value=1, max_value=6),
)
def test_string_key_lookup_matches_brute_force(tmp_path_factory, root_idx, n_right):
    fs = FeatureStore(tmp_path_factory.mktemp("lk") / "store")
    ids = [f"{i:064x}" for i in range(8)]
    root_keys = [None if i < 0 else ids[i] for i in root_idx]
    root, cust = _string_key_groups(fs, root_keys, ids[:n_right], "h")
    got = root.select(["row", "customer_id", "t_dat"]).join(cust.select(["age", "status"]), on="customer_id").read()
    assert got.equals(_expected_left_join(root, cust))
