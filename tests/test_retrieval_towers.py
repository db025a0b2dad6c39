"""Towers over raw features: shapes, vocabularies with OOV, normalisation, persistence."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from _retrieval_toy import toy_data

from hmrec.retrieval import TwoTowerConfig, TwoTowerModel, one_hot
from hmrec.retrieval.features import OOV, FeatureSpec, fit_feature, normalized


@pytest.fixture(scope="module")
def data():
    return toy_data(n_customers=60, n_articles=50, purchases=6, seed=3)


def test_tower_output_shapes_and_dtype(data):
    train_df, val_df, articles = data
    model = TwoTowerModel.untrained(train_df, articles, TwoTowerConfig(embedding_dim=8, hidden_dims=(12,), output_dim=5))
    q = model.query_tower.embed(val_df)
    i = model.item_tower.embed(articles)
    assert q.shape == (val_df.height, 5) and q.dtype == np.float32
    assert i.shape == (articles.height, 5) and i.dtype == np.float32
    # customer_id vocab is fitted on training rows: codes 1..n, 0 is OOV
    cust = model.query_tower.features[0]
    assert cust.spec.column == "customer_id"
    assert cust.cardinality == train_df["customer_id"].n_unique() + 1
    assert model.query_tower.embeddings[0].weight.shape == (cust.cardinality, 8)
    # query MLP input: emb 8 + age (value + missing flag) 2 + month_sin + month_cos
    assert model.query_tower.mlp[0].in_features == 8 + 2 + 2
    # item MLP input: emb 8 + one-hot garment (+OOV) + one-hot index group (+OOV)
    n_g = train_df["garment_group_name"].n_unique() + 1
    n_i = train_df["index_group_name"].n_unique() + 1
    assert model.item_tower.mlp[0].in_features == 8 + n_g + n_i


def test_unknown_and_null_values_map_to_the_oov_bucket(data):
    train_df, _, articles = data
    f = fit_feature(FeatureSpec("customer_id", "embedding"), train_df)
    known = train_df["customer_id"][0]
    frame = pl.DataFrame({"customer_id": [known, "f" * 64, None]})
    codes = f.codes(frame)
    assert codes[0] == f.vocab.to_list().index(known) + 1
    assert codes[1] == OOV and codes[2] == OOV
    model = TwoTowerModel.untrained(train_df, articles)
    row = train_df.head(1)
    unseen = row.with_columns(pl.lit("e" * 64).alias("customer_id"))
    also_unseen = row.with_columns(pl.lit("d" * 64).alias("customer_id"))
    e_unseen, e_also = model.query_tower.embed(unseen), model.query_tower.embed(also_unseen)
    np.testing.assert_array_equal(e_unseen, e_also)  # both use the OOV row
    assert not np.allclose(e_unseen, model.query_tower.embed(row))
    # an article outside the training vocabulary still embeds (OOV id, real attributes)
    new_article = articles.head(1).with_columns(pl.lit("0999999999").alias("article_id"))
    assert np.isfinite(model.item_tower.embed(new_article)).all()


def test_age_is_normalised_with_training_stats_and_nulls_imputed(data):
    train_df, _, _ = data
    f = fit_feature(normalized("age"), train_df)
    ages = train_df["age"].drop_nulls().cast(pl.Float64)
    assert f.mean == pytest.approx(ages.mean()) and f.std == pytest.approx(ages.std(ddof=0))
    assert f.median == pytest.approx(ages.median())
    x = f.dense(pl.DataFrame({"age": pl.Series([f.mean + f.std, None], dtype=pl.Float32)}))
    np.testing.assert_allclose(x[0], [1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(x[1], [(f.median - f.mean) / f.std, 1.0], atol=1e-5)


def test_adding_a_feature_is_configuration(data):
    train_df, val_df, articles = data
    cfg = TwoTowerConfig()
    wider = TwoTowerConfig(query_features=cfg.query_features + (one_hot("club_member_status"),))
    base = TwoTowerModel.untrained(train_df, articles, cfg)
    model = TwoTowerModel.untrained(train_df, articles, wider)
    n_status = train_df["club_member_status"].n_unique() + 1
    assert model.query_tower.mlp[0].in_features == base.query_tower.mlp[0].in_features + n_status
    assert model.query_tower.embed(val_df).shape == (val_df.height, 16)


def test_missing_column_is_a_clear_error(data):
    train_df, _, articles = data
    model = TwoTowerModel.untrained(train_df, articles)
    with pytest.raises(ValueError, match="'age'"):
        model.query_tower.embed(train_df.drop("age"))


def test_save_load_gives_identical_embeddings(data, tmp_path):
    train_df, val_df, articles = data
    model = TwoTowerModel.untrained(train_df, articles, TwoTowerConfig(seed=5))
    with torch.no_grad():  # make the weights differ from any fresh initialisation
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")  # overwriting is fine and atomic
    loaded = TwoTowerModel.load(tmp_path / "m")
    np.testing.assert_array_equal(model.query_tower.embed(val_df), loaded.query_tower.embed(val_df))
    np.testing.assert_array_equal(model.item_tower.embed(articles), loaded.item_tower.embed(articles))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "vocab", "weights.npz"]
