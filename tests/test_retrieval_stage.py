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


@pytest.fixture(scope="module")
def parts():
    train, val, articles = toy_data(n_customers=60, n_articles=80, purchases=10, seed=3)
    model = TwoTowerModel.fit(train, articles, TwoTowerConfig(seed=3))  # untrained, seeded: enough here
    index = CandidateIndex.build(model, articles)
    customers = train.select("customer_id", "age").unique("customer_id", keep="first").sort("customer_id")
    history = pl.concat([train, val]).select("t_dat", "customer_id", "article_id")
    as_of = val["t_dat"].min()
    return model, index, customers, history, as_of


def test_prior_reads_only_the_past(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history, prior_weight=1.0)
    past_only = RetrievalStage(model, index, customers, history=history.filter(pl.col("t_dat") < as_of),
                               prior_weight=1.0)
    np.testing.assert_array_equal(stage.popularity_prior(as_of), past_only.popularity_prior(as_of))


def test_prior_is_recent_share_over_overall_share(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history, prior_weight=1.0)
    prior = stage.popularity_prior(as_of, smoothing=1.0)
    before = history.filter(pl.col("t_dat") < as_of)
    recent = before.filter(pl.col("t_dat") >= as_of - dt.timedelta(days=7))
    article = recent.group_by("article_id").len().sort("len", descending=True)["article_id"][0]
    n = len(index)
    r = recent.filter(pl.col("article_id") == article).height
    a = before.filter(pl.col("article_id") == article).height
    expected = np.log((r + 1) / (recent.height + n)) - np.log((a + 1) / (before.height + n))
    pos = index.article_ids.to_list().index(article)
    assert prior[pos] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weight", [0.0, 1.0, 2.5])
def test_faiss_with_prior_equals_brute_force(parts, weight):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history, prior_weight=weight)
    ids = customers["customer_id"].head(10).to_list()
    found = stage.two_tower(ids, as_of, 20)
    q = stage.query_embeddings(ids, as_of)
    scores = q @ index.embeddings.T + (weight * stage.popularity_prior(as_of) if weight else 0.0)
    names = np.array(index.article_ids.to_list())
    for i, c in enumerate(ids):
        top = names[np.argsort(-scores[i], kind="stable")[:20]]
        got = [a for a, _ in found[c]]
        assert set(got) == set(top)
        np.testing.assert_allclose([s for _, s in found[c]], np.sort(scores[i])[::-1][:20], rtol=1e-4, atol=1e-5)


def test_candidates_merge_popular_articles_within_the_budget(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history, n_popular=10, prior_weight=1.0)
    ids = customers["customer_id"].head(5).to_list()
    popular = best_sellers(history, as_of, 7, 10)
    assert popular == stage.popular(as_of)
    for c, items in stage(ids, as_of, 30).items():
        articles = [a for a, _ in items]
        assert len(articles) == len(set(articles)) <= 30
        assert set(popular) <= set(articles)


def test_pair_scores_are_plain_dot_products(parts):
    model, index, customers, history, as_of = parts
    stage = RetrievalStage(model, index, customers, history=history, prior_weight=1.0)
    c = customers["customer_id"].head(3).to_list()
    a = index.article_ids.head(3).to_list()
    got = stage.score_pairs(c + ["0" * 64], a + ["9999999999"], as_of)
    q = stage.query_embeddings(c, as_of)
    expected = np.einsum("ij,ij->i", q, index.embeddings[:3])
    np.testing.assert_allclose(got[:3], expected, rtol=1e-5)
    assert np.isnan(got[3])  # an article outside the index has no score
