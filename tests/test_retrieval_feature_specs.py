"""Tower inputs are configuration: 'kind:column' specs from Settings, and a tower with an
extra feature trains, embeds and uses it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from _retrieval_toy import toy_data

from hmrec.config import Settings
from hmrec.retrieval import TwoTowerConfig, TwoTowerModel, train
from hmrec.retrieval.features import (
    DEFAULT_ITEM_FEATURES,
    DEFAULT_QUERY_FEATURES,
    FeatureSpec,
    format_feature_specs,
    parse_feature_specs,
)

N_GROUPS = 8


def test_parse_gives_the_specs_and_round_trips():
    specs = parse_feature_specs(" embedding:article_id:8 , one_hot:index_name,normalized:age , raw:month_sin ")
    assert specs == (
        FeatureSpec("article_id", "embedding", dim=8),
        FeatureSpec("index_name", "one_hot"),
        FeatureSpec("age", "normalized"),
        FeatureSpec("month_sin", "raw"),
    )
    assert format_feature_specs(specs) == "embedding:article_id:8,one_hot:index_name,normalized:age,raw:month_sin"
    assert parse_feature_specs("ONE_HOT:x") == (FeatureSpec("x", "one_hot"),)  # kind is case-insensitive
    for default in (DEFAULT_QUERY_FEATURES, DEFAULT_ITEM_FEATURES):
        assert parse_feature_specs(format_feature_specs(default)) == default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no features given"),
        ("embedding:article_id,onehot:index_name", r"item 2 'onehot:index_name': unknown kind 'onehot'"),
        ("embedding:article_id,index_name", r"item 2 'index_name' is not 'kind:column'"),
        ("embedding:", r"item 1 'embedding:' is not 'kind:column'"),
        ("embedding:article_id,,one_hot:x", r"item 2 '' is not"),
        ("embedding:article_id:0", "embedding size must be a positive integer, got '0'"),
        ("embedding:article_id:big", "embedding size must be a positive integer, got 'big'"),
        ("one_hot:index_name:4", "only embedding features take a size"),
        ("a:b:1:2", r"item 1 'a:b:1:2' is not"),
        ("one_hot:index_name,embedding:index_name", "column 'index_name' is listed twice"),
    ],
)
def test_parse_rejects_bad_specs_naming_the_setting_and_item(text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_feature_specs(text, "TWO_TOWER_ITEM_FEATURES")
    assert str(err.value).startswith("TWO_TOWER_ITEM_FEATURES: ")


def test_settings_choose_the_tower_features():
    default = TwoTowerConfig.from_settings(Settings())
    assert default.query_features == DEFAULT_QUERY_FEATURES  # the reference architecture by default
    assert default.item_features == DEFAULT_ITEM_FEATURES
    cfg = TwoTowerConfig.from_settings(
        Settings(
            TWO_TOWER_QUERY_FEATURES="embedding:customer_id,normalized:age,one_hot:club_member_status",
            TWO_TOWER_ITEM_FEATURES="embedding:article_id,one_hot:index_name",
        )
    )
    assert [s.column for s in cfg.query_features] == ["customer_id", "age", "club_member_status"]
    assert cfg.item_features == (FeatureSpec("article_id", "embedding"), FeatureSpec("index_name", "one_hot"))
    with pytest.raises(ValueError, match="TWO_TOWER_QUERY_FEATURES: item 1 'customer_id'"):
        TwoTowerConfig.from_settings(Settings(TWO_TOWER_QUERY_FEATURES="customer_id"))


@pytest.fixture(scope="module")
def taste_data():
    """Toy data whose articles carry their taste group in an extra column ``taste``, plus
    one never-sold article per group (out of the article_id vocabulary), alike in every
    other column, so only ``taste`` tells them apart."""
    train_df, val_df, articles = toy_data(n_customers=200, n_articles=240, n_groups=N_GROUPS, purchases=20, seed=4)
    n = articles.height
    articles = articles.with_columns(
        pl.Series("taste", [f"t{a % N_GROUPS}" for a in range(n)]),  # toy_data's group of article a
    )
    new = pl.DataFrame(
        {
            "article_id": [f"{999000000 + g:010d}" for g in range(N_GROUPS)],
            "garment_group_name": ["Trousers"] * N_GROUPS,
            "index_group_name": ["Ladieswear"] * N_GROUPS,
            "prod_name": [f"new {g}" for g in range(N_GROUPS)],
            "taste": [f"t{g}" for g in range(N_GROUPS)],
        }
    )
    return train_df, val_df, articles, new


def _customer_groups(train_df: pl.DataFrame, articles: pl.DataFrame) -> pl.DataFrame:
    """Each customer's most bought taste group (toy_data: 90% of purchases are in it)."""
    return (
        train_df.join(articles.select("article_id", "taste"), on="article_id")
        .group_by("customer_id", "taste").len()
        .sort(["customer_id", "len", "taste"], descending=[False, True, False])
        .unique("customer_id", keep="first", maintain_order=True)
    )


def test_an_extra_item_feature_trains_embeds_and_carries_taste_to_unseen_articles(taste_data, tmp_path):
    train_df, val_df, articles, new = taste_data
    base = TwoTowerConfig(batch_size=256, num_epochs=5, seed=3, popularity_prior_days=None, patience=None)
    wider = TwoTowerConfig(**{**base.__dict__, "item_features": base.item_features + (FeatureSpec("taste", "one_hot"),)})
    result = train(train_df, val_df, articles, wider)
    model = result.model
    tower = model.item_tower
    assert tower.columns == ["article_id", "garment_group_name", "index_group_name", "taste"]
    # MLP input: article embedding 16 + garment, index group and taste one-hots (each + OOV)
    n_garment = articles.join(train_df.select("article_id").unique(), on="article_id")["garment_group_name"].n_unique()
    assert tower.mlp[0].in_features == 16 + (n_garment + 1) + (5 + 1) + (N_GROUPS + 1)
    assert tower.features[-1].vocab.to_list() == [f"t{g}" for g in range(N_GROUPS)]

    # The new articles share everything but taste; the tower tells them apart by it...
    emb = tower.embed(new)
    assert emb.shape == (N_GROUPS, 16) and np.isfinite(emb).all()
    assert np.linalg.norm(emb[:, None, :] - emb[None, :, :], axis=2)[~np.eye(N_GROUPS, dtype=bool)].min() > 1e-3
    # ... and scores each customer's own taste first for most customers (chance: 1 in 8;
    # 0.73 measured: the OOV article_id row is all zeros, a shift the tower never trained on).
    groups = _customer_groups(train_df, articles).select("customer_id", "taste")
    rows = train_df.unique("customer_id", keep="first", maintain_order=True).join(
        groups, on="customer_id", how="inner", maintain_order="left"
    )
    best = (model.query_tower.embed(rows) @ emb.T).argmax(axis=1)
    truth = np.array([int(t[1:]) for t in rows["taste"]])
    assert (best == truth).mean() > 0.5

    # Without the feature the same articles are indistinguishable: identical embeddings.
    plain = TwoTowerModel.untrained(train_df, articles, base).item_tower.embed(new)
    np.testing.assert_allclose(plain, np.repeat(plain[:1], N_GROUPS, axis=0), rtol=1e-5, atol=1e-6)  # same rows; BLAS kernels may differ per row position

    # The extra feature travels with the saved model.
    model.save(tmp_path / "m")
    loaded = TwoTowerModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.item_tower.embed(new), emb)
    with pytest.raises(ValueError, match="'taste'"):
        loaded.item_tower.embed(new.drop("taste"))
