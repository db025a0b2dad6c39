"""The ranking step reads its tables from a real feature store built from generated data."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from hmrec.data import generate, load_raw
from hmrec.features import build_articles, build_customers, build_transactions
from hmrec.features.groups import ARTICLES, CUSTOMERS, TRANSACTIONS
from hmrec.ranking.dataset import Window, build_ranking_dataset, feature_columns
from hmrec.ranking.inputs import load_inputs, ranking_feature_view
from hmrec.ranking.leakage import null_pattern_leaks
from hmrec.store import FeatureStore


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    data = tmp_path_factory.mktemp("data")
    generate(data, n_customers=200, seed=3)
    raw = load_raw(data)
    fs = FeatureStore(tmp_path_factory.mktemp("store"))
    for spec, frame in (
        (CUSTOMERS, build_customers(raw.customers)),
        (ARTICLES, build_articles(raw.articles)),
        (TRANSACTIONS, build_transactions(raw.transactions)),
    ):
        fg = fs.get_or_create_feature_group(
            spec.name, version=spec.version, primary_key=spec.primary_key, event_time=spec.event_time,
            description=spec.description, features=spec.features, schema=spec.schema,
        )
        fg.insert(frame)
    return fs


def test_feature_view_is_created_once_and_names_its_groups(store: FeatureStore) -> None:
    fv = ranking_feature_view(store)
    again = ranking_feature_view(store)
    meta = again.metadata
    assert (meta["name"], meta["version"]) == ("ranking", 1)
    assert [g["name"] for g in meta["groups"]] == ["transactions", "customers", "articles"]
    assert {"age", "age_group", "club_member_status", "garment_group_name", "section_name"} <= set(fv.columns)
    rows = fv.training_data()
    assert rows.height == store.get_feature_group("transactions").count()


def test_dataset_from_the_store_is_leak_free(store: FeatureStore) -> None:
    inputs = load_inputs(store)
    last = inputs.transactions.select(pl.col("t_dat").max()).collect().item()
    windows = Window.weeks_before(last + timedelta(days=1), 2)
    df = build_ranking_dataset(
        inputs.transactions, inputs.articles, inputs.customers, windows, negatives="random", seed=0
    )
    n_pos = int(df["label"].sum())
    assert n_pos > 0 and df.height == 11 * n_pos
    feats = feature_columns(df)
    assert {"age", "age_group", "club_member_status", "FN", "product_type_name"} <= set(feats)
    assert null_pattern_leaks(df, feats) == {}
    for c in feats:
        assert df[c].null_count() == 0, c  # the cleaned groups leave nothing missing
