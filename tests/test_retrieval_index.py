"""FAISS candidate index: exact top-k (equals brute force), built from the item tower."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from _retrieval_toy import toy_data

from hmrec.retrieval import CandidateIndex, TwoTowerModel


def test_top_k_equals_brute_force():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3000, 16)).astype(np.float32)
    ids = [f"{i:010d}" for i in range(3000)]
    index = CandidateIndex(ids, emb)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    got_ids, got_scores = index.retrieve(queries, 100)
    scores = queries @ emb.T
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    assert got_ids.shape == (20, 100)
    assert (got_ids == np.array(ids)[expected]).all()
    np.testing.assert_allclose(got_scores, np.take_along_axis(scores, expected, 1), rtol=1e-5, atol=1e-5)
    one_ids, one_scores = index.retrieve(queries[3], 5)
    assert one_ids.tolist() == got_ids[3, :5].tolist()


def test_built_from_model_matches_item_tower_and_round_trips(tmp_path):
    train_df, val_df, articles = toy_data(n_customers=40, n_articles=60, purchases=5, seed=2)
    model = TwoTowerModel.untrained(train_df, articles)
    index = CandidateIndex.build(model, articles)
    assert len(index) == articles.height
    np.testing.assert_array_equal(index.embeddings, model.item_tower.embed(articles))
    q = model.query_tower.embed(val_df.head(3))
    ids, scores = index.retrieve(q, 1000)  # k is capped at the catalogue size
    assert ids.shape == (3, articles.height)
    brute = q @ index.embeddings.T
    np.testing.assert_allclose(scores, -np.sort(-brute, axis=1), rtol=1e-5, atol=1e-6)
    index.save(tmp_path / "idx")
    loaded = CandidateIndex.load(tmp_path / "idx")
    assert (loaded.retrieve(q, 10)[0] == index.retrieve(q, 10)[0]).all()
    frame = index.to_frame()
    assert frame.columns == ["article_id", "embedding"] and frame.height == articles.height
    np.testing.assert_array_equal(CandidateIndex.from_frame(frame).embeddings, index.embeddings)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="one embedding row per article"):
        CandidateIndex(["a", "b"], np.zeros((3, 4), np.float32))
    index = CandidateIndex(pl.Series(["a", "b"]), np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.retrieve(np.zeros(3, np.float32), 1)
