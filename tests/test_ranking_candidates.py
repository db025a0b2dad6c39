"""Blended candidates: two-tower top-k plus best sellers plus recent purchases, scored alike."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from hmrec.ranking.candidates import BlendedCandidates

D = date(2020, 3, 10)


def _tx() -> pl.DataFrame:
    rows = [
        (date(2020, 3, 9), "x", "p1"), (date(2020, 3, 9), "y", "p1"), (date(2020, 3, 8), "x", "p2"),
        (date(2020, 3, 2), "z", "p3"),  # 8 days before: outside the 7-day best-seller window
        (date(2020, 3, 10), "x", "p9"), (date(2020, 3, 10), "y", "p9"), (date(2020, 3, 10), "z", "p9"),  # on as_of
        (date(2020, 2, 1), "c1", "old"),  # c1's purchase 38 days before
        (date(2019, 12, 1), "c1", "ancient"),  # 100 days before: beyond repurchase_days
        (date(2020, 3, 11), "c1", "future"),
    ]
    return pl.DataFrame(rows, schema=["t_dat", "customer_id", "article_id"], orient="row")


def retrieval(cids: list[str], as_of: date, k: int) -> dict:
    return {c: [("t1", 0.0), ("p1", 0.0)][:k] for c in cids}


def scorer(cids: list[str], aids: list[str], as_of: date) -> np.ndarray:
    table = {"t1": 3.0, "p1": 1.0, "p2": 2.0, "old": 5.0, "ancient": 9.0}
    return np.array([table.get(a, np.nan) for a in aids])


def test_union_is_scored_and_ordered_by_the_pair_score() -> None:
    blend = BlendedCandidates(retrieval, scorer, _tx(), n_popular=5, popular_days=7, repurchase_days=56)
    out = blend(["c1", "c2"], D, k=2)
    assert blend.popular(D) == ["p1", "p2"]  # p9 bought on as_of and p3 too early: not seen
    assert [a for a, _ in out["c1"]] == ["old", "t1", "p2", "p1"]
    assert [a for a, _ in out["c2"]] == ["t1", "p2", "p1"]
    assert out["c1"][0] == ("old", 5.0)


def test_unknown_scores_go_last_and_repurchase_can_be_off() -> None:
    blend = BlendedCandidates(retrieval, scorer, _tx(), n_popular=5, popular_days=14, repurchase_days=0)
    out = blend(["c1"], D, k=2)
    assert [a for a, _ in out["c1"]] == ["t1", "p2", "p1", "p3"]
    assert np.isnan(out["c1"][-1][1])
    assert blend([], D, k=2) == {}


def test_frame_path_and_dict_path_give_the_same_candidate_frame() -> None:
    from hmrec.ranking.negatives import candidate_frame

    blend = BlendedCandidates(retrieval, scorer, _tx(), n_popular=5, popular_days=14, repurchase_days=56)
    fast = candidate_frame(blend, ["c2", "c1", "c2"], D, k=2, batch_size=1)
    slow = candidate_frame(lambda c, d, k: blend(c, d, k), ["c2", "c1"], D, k=2)
    assert fast.equals(slow)
    assert fast.filter(pl.col("customer_id") == "c1")["retrieval_rank"].to_list() == [1, 2, 3, 4, 5]
    assert fast["customer_id"].to_list()[:4] == ["c2"] * 4
