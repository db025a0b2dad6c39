"""Popularity prior (hand-computed values, refresh, persistence) and time-local batching."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest
import torch
from _retrieval_toy import toy_data

from hmrec.retrieval import TwoTowerConfig, TwoTowerModel
from hmrec.retrieval.prior import PopularityPrior
from hmrec.retrieval.trainer import epoch_order

CATALOGUE = pl.Series(["a", "b", "c"])
TX = pl.DataFrame(
    {
        "article_id": ["a", "a", "b", "a", "c", "c", "c"],
        "t_dat": [date(2020, 9, 1)] * 3 + [date(2020, 9, 10), date(2020, 9, 12), date(2020, 9, 14), date(2020, 9, 14)],
    }
)


def test_prior_is_log_recent_share_minus_log_training_share():
    # last 7 days = Sep 8..14: a once, c three times, b never; smoothing 0.5 over 3 articles
    p = PopularityPrior.fit(TX, CATALOGUE, days=7, smoothing=0.5)
    denom = 4 + 0.5 * 3
    np.testing.assert_allclose(p.bias, np.log([1.5 / denom, 0.5 / denom, 3.5 / denom]), rtol=1e-6)
    assert p.as_of == date(2020, 9, 14)
    assert p.lookup(pl.Series(["c", "zzz"])).tolist() == pytest.approx([math.log(3.5 / denom), math.log(0.5 / denom)])
    # logQ-trained: the training shares (count / rows, at least 1 count) are subtracted
    q = PopularityPrior.fit(TX, CATALOGUE, days=7, smoothing=0.5, train_df=TX)
    np.testing.assert_allclose(q.bias - p.bias, -np.log(np.array([3, 1, 3]) / 7), rtol=1e-6)
    assert q.default - p.default == pytest.approx(-math.log(1 / 7))


def test_refresh_moves_the_window_and_keeps_log_q():
    q = PopularityPrior.fit(TX, CATALOGUE, days=7, smoothing=0.5, train_df=TX)
    later = pl.concat([TX, pl.DataFrame({"article_id": ["b"] * 5, "t_dat": [date(2020, 9, 20)] * 5})])
    r = q.refresh(later)
    assert r.as_of == date(2020, 9, 20)
    np.testing.assert_array_equal(r.log_q, q.log_q)
    # window Sep 14..20: c twice, b five times, a none
    denom = 7 + 1.5
    np.testing.assert_allclose(r.log_recent, np.log([0.5 / denom, 5.5 / denom, 2.5 / denom]), rtol=1e-6)


def test_model_embeddings_carry_the_prior_as_one_score_column(tmp_path):
    train_df, val_df, articles = toy_data(n_customers=50, n_articles=60, purchases=6, seed=4)
    model = TwoTowerModel.untrained(train_df, articles)
    plain_q, plain_i = model.query_tower.embed(val_df), model.item_tower.embed(articles)
    prior = PopularityPrior.fit(train_df, articles["article_id"], train_df=train_df)
    model.set_prior(prior)
    q, i = model.query_tower.embed(val_df), model.item_tower.embed(articles)
    assert q.shape[1] == i.shape[1] == model.embedding_size == 17
    np.testing.assert_array_equal(q[:, :16], plain_q)
    np.testing.assert_array_equal(q[:, 16], 1.0)
    np.testing.assert_allclose(i[:, 16], prior.lookup(articles["article_id"]))
    np.testing.assert_allclose(q @ i.T, plain_q @ plain_i.T + i[:, 16][None, :], rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "m")
    loaded = TwoTowerModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.item_tower.embed(articles), i)
    np.testing.assert_array_equal(loaded.query_tower.embed(val_df), q)
    assert loaded.prior.as_of == prior.as_of


def test_time_local_batches_are_contiguous_blocks_covering_every_row_once():
    g = torch.Generator().manual_seed(3)
    order = epoch_order(23, 5, g, "time_local")
    assert sorted(order.tolist()) == list(range(23))
    batches = [order[k : k + 5].tolist() for k in range(0, 23, 5)]
    for b in batches:  # each batch is a run of consecutive rows (mod 23: the last one wraps)
        assert all((y - x) % 23 == 1 for x, y in zip(b, b[1:]))
    assert not torch.equal(order, epoch_order(23, 5, torch.Generator().manual_seed(4), "time_local"))
    assert sorted(epoch_order(23, 5, g, "shuffle").tolist()) == list(range(23))


def test_config_rejects_unknown_batching():
    with pytest.raises(ValueError, match="batching"):
        TwoTowerConfig(batching="random")
