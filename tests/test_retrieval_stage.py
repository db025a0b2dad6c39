"""The retrieval stage the rest of the system calls: two-tower candidates with the
current-popularity prior, popular candidates, pair scores."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from _retrieval_toy import toy_data
from hmrec.retrieval.candidates import RetrievalStage, best_sellers
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.index import CandidateIndex
from hmrec.retrieval.model import TwoTowerModel
from hmrec.retrieval.prior import PopularityPrior


@pytest.fixture(scope="module")
def parts():
    train, val, articles = toy_data(n_customers=60, n_articles=80, purchases=10, seed=3)
    model = TwoTowerModel.untrained(train, articles, TwoTowerConfig(seed=3))  # untrained, seeded: enough here
    model.set_prior(PopularityPrior.fit(train, articles["article_id"], days=7, train_df=train))
    index = CandidateIndex.build(model, articles)
    customers = train.select("customer_id", "age").unique("customer_id", keep="first").sort("customer_id")
    history = pl.concat([train, val]).select("t_dat", "customer_id", "article_id")
    as_of = val["t_dat"].min()
    return model, index, customers, history, as_of


def test_prior_is_refreshed_from_the_past_only(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history)
    past_only = RetrievalStage(model, index, customers, history=history.filter(pl.col("t_dat") < as_of))
    dated = stage._index_for(as_of).embeddings
    np.testing.assert_array_equal(dated, past_only._index_for(as_of).embeddings)
    # the taste columns are the model's; the last column is the prior of the week before as_of
    np.testing.assert_array_equal(dated[:, :-1], index.embeddings[:, :-1])
    week = history.filter((pl.col("t_dat") < as_of) & (pl.col("t_dat") >= as_of - dt.timedelta(days=7)))
    seller = week.group_by("article_id").len().sort(["len", "article_id"], descending=[True, False])["article_id"][0]
    unsold = sorted(set(index.article_ids.to_list()) - set(week["article_id"].to_list()))[0]
    ids = index.article_ids.to_list()
    log_q = dict(zip(model.prior.article_ids.to_list(), model.prior.log_q))
    recent_part = {a: dated[ids.index(a), -1] + log_q[a] for a in (seller, unsold)}  # prior = log p_recent - log q
    assert recent_part[seller] > recent_part[unsold]


def test_faiss_with_refreshed_prior_equals_brute_force(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history)
    ids = customers["customer_id"].head(10).to_list()
    found = stage.two_tower(ids, as_of, 20)
    q = stage.query_embeddings(ids, as_of)
    assert np.all(q[:, -1] == 1.0)
    scores = q @ stage._index_for(as_of).embeddings.T
    for i, c in enumerate(ids):
        np.testing.assert_allclose([s for _, s in found[c]], np.sort(scores[i])[::-1][:20], rtol=1e-4, atol=1e-5)
        best = int(np.argmax(scores[i]))
        assert found[c][0][0] == index.article_ids[best]


def test_candidates_merge_popular_articles_within_the_budget(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history, n_popular=10)
    ids = customers["customer_id"].head(5).to_list()
    popular = best_sellers(history, as_of, 7, 10)
    assert popular == stage.popular(as_of)
    for c, items in stage(ids, as_of, 30).items():
        articles = [a for a, _ in items]
        assert len(articles) == len(set(articles)) <= 30
        assert set(popular) <= set(articles)


def test_pair_scores_are_the_retrieval_scores(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history)
    c = customers["customer_id"].head(3).to_list()
    a = index.article_ids.head(3).to_list()
    got = stage.score_pairs(c + ["0" * 64], a + ["9999999999"], as_of)
    q = stage.query_embeddings(c, as_of)
    expected = np.einsum("ij,ij->i", q, stage._index_for(as_of).embeddings[:3])  # the retrieval score
    np.testing.assert_allclose(got[:3], expected, rtol=1e-5)
    assert np.isnan(got[3])  # an article outside the index has no score
