"""Retrieval metrics against hand-computed values, and the evaluation split."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from hmrec.retrieval.list_metrics import per_query_metrics
from hmrec.retrieval.metrics import (
    evaluate_popularity,
    make_eval_split,
    popularity_scores,
    random_ranks,
    ranks_of_targets,
    top_k_accuracy,
)


def test_ranks_count_better_items_and_break_ties_by_catalogue_position():
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.array([[0.5, 0], [2, 0], [1, 0], [1, 0]], dtype=np.float32)  # scores .5, 2, 1, 1
    ranks = ranks_of_targets(q, items, np.zeros(4, np.int64), np.arange(4))
    assert ranks.tolist() == [3, 0, 1, 2]
    # tiny chunks give the same answer
    assert ranks_of_targets(q, items, np.zeros(4, np.int64), np.arange(4), max_chunk_elements=1).tolist() == [3, 0, 1, 2]


def test_top_k_accuracy_by_hand():
    acc = top_k_accuracy(np.array([0, 3, 5, 120]), (1, 5, 100))
    assert acc == {"top_1_accuracy": 0.25, "top_5_accuracy": 0.5, "top_100_accuracy": 0.75}


def test_per_customer_metrics_by_hand():
    # customer 10 has relevant items at ranks 0 and 3; customer 20 one item at rank 5
    m = per_query_metrics(np.array([10, 10, 20]), np.array([0, 3, 5]), (1, 4))
    assert m["recall_at_1"] == pytest.approx((0.5 + 0) / 2)
    assert m["precision_at_1"] == pytest.approx((1 + 0) / 2)
    assert m["ndcg_at_1"] == pytest.approx((1 + 0) / 2)
    assert m["recall_at_4"] == pytest.approx((1 + 0) / 2)
    assert m["precision_at_4"] == pytest.approx((0.5 + 0) / 2)
    ndcg_a = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m["ndcg_at_4"] == pytest.approx(ndcg_a / 2)
    assert m["mrr"] == pytest.approx((1 + 1 / 6) / 2)


def test_random_ranks_are_distinct_per_query_and_seeded():
    qi = np.repeat(np.arange(50), 4)
    r = random_ranks(qi, 10, seed=1)
    assert ((r >= 0) & (r < 10)).all()
    assert all(len(set(r[qi == q])) == 4 for q in range(50))
    assert np.array_equal(r, random_ranks(qi, 10, seed=1))
    many = random_ranks(np.arange(20000), 100, seed=2)
    assert top_k_accuracy(many, (10,))["top_10_accuracy"] == pytest.approx(0.1, abs=0.01)


def _window() -> tuple[pl.DataFrame, pl.Series]:
    catalogue = pl.Series(["a0", "a1", "a2", "a3"])
    df = pl.DataFrame(
        {
            "customer_id": ["c2", "c1", "c1", "c1", "c2"],
            "article_id": ["a1", "a3", "a3", "a0", "a2"],
            "t_dat": [date(2020, 9, 16), date(2020, 9, 18), date(2020, 9, 15), date(2020, 9, 17), date(2020, 9, 15)],
            "age": [30.0, 40.0, 41.0, 42.0, 31.0],
        }
    )
    return df, catalogue


def test_eval_split_rows_customers_and_distinct_pairs():
    df, catalogue = _window()
    s = make_eval_split(df, catalogue)
    assert s.row_target.tolist() == [1, 3, 3, 0, 2]
    assert s.customers["customer_id"].to_list() == ["c1", "c2"]
    assert s.customers["age"].to_list() == [41.0, 31.0]  # the earliest row of each customer
    assert list(zip(s.pair_customer.tolist(), s.pair_target.tolist())) == [(0, 0), (0, 3), (1, 1), (1, 2)]


def test_unknown_article_in_window_names_column_row_and_value():
    df, catalogue = _window()
    bad = df.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("zz")).otherwise("article_id").alias("article_id"))
    with pytest.raises(ValueError, match=r"'article_id', row 2: value 'zz'"):
        make_eval_split(bad, catalogue, "validation split")


def test_popularity_uses_last_week_then_all_time_counts():
    train = pl.DataFrame(
        {
            "article_id": ["a0", "a0", "a0", "a1", "a2", "a2"],
            "t_dat": [date(2020, 9, 1), date(2020, 9, 1), date(2020, 9, 1), date(2020, 9, 14), date(2020, 9, 14), date(2020, 9, 8)],
        }
    )
    scores = popularity_scores(train, pl.Series(["a0", "a1", "a2", "a3"]))
    # last week = Sep 8..14: a1 once, a2 twice; a0 only earlier (3 all time); a3 never
    assert np.argsort(-scores, kind="stable").tolist() == [2, 1, 0, 3]
    df, catalogue = _window()
    s = make_eval_split(df, catalogue)
    m = evaluate_popularity(s, scores, (1, 2), (2,))
    # row targets [a1, a3, a3, a0, a2] have popularity ranks [1, 3, 3, 2, 0]
    assert m["top_1_accuracy"] == pytest.approx(1 / 5)
    assert m["top_2_accuracy"] == pytest.approx(2 / 5)
    # c1 wants {a0 (rank 2), a3 (rank 3)} -> 0 hits@2; c2 wants {a1 (1), a2 (0)} -> 2 hits@2
    assert m["recall_at_2"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx((1 / 3 + 1) / 2)


def test_subsample_keeps_whole_customers_and_consistent_indices():
    from hmrec.retrieval.metrics import subsample_split

    rng = np.random.default_rng(0)
    n = 400
    df = pl.DataFrame(
        {
            "customer_id": [f"c{int(c):03d}" for c in rng.integers(0, 80, n)],
            "article_id": [f"a{int(a)}" for a in rng.integers(0, 30, n)],
            "t_dat": [date(2020, 9, 15 + int(d)) for d in rng.integers(0, 7, n)],
        }
    )
    s = make_eval_split(df, pl.Series([f"a{i}" for i in range(30)]))
    sub = subsample_split(s, 100, seed=1)
    assert 50 <= sub.rows.height <= 150
    kept = set(sub.customers["customer_id"].to_list())
    assert set(sub.rows["customer_id"].to_list()) == kept
    # every kept customer keeps all its rows and pairs, with indices into the new customer list
    assert sub.rows.height == df.filter(pl.col("customer_id").is_in(list(kept))).height
    for c_idx, tgt in zip(sub.pair_customer.tolist(), sub.pair_target.tolist()):
        cid = sub.customers["customer_id"][c_idx]
        assert f"a{tgt}" in df.filter(pl.col("customer_id") == cid)["article_id"].to_list()
    assert subsample_split(s, 10_000, seed=1) is s
