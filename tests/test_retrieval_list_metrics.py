"""The shared per-list metrics (AP@K Kaggle definition, NDCG@K) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hmrec.retrieval.list_metrics import (
    average_precision_at_k,
    customer_order,
    list_metrics,
    ndcg_at_k,
    sorted_groups,
)


def test_ap_hits_at_one_and_three_of_three_relevant() -> None:
    # hits at positions 1 and 3: (1/1 + 2/3) / min(3, 12)
    assert average_precision_at_k({"a", "b", "c"}, ["a", "x", "b", "y"]) == pytest.approx((1 + 2 / 3) / 3)


def test_ap_customer_with_one_purchase_is_normalised_by_one() -> None:
    assert average_precision_at_k({"a"}, ["x", "a"]) == pytest.approx(0.5)
    assert average_precision_at_k({"a"}, ["a"]) == pytest.approx(1.0)


def test_ap_more_than_twelve_relevant_divides_by_twelve() -> None:
    relevant = [f"r{i}" for i in range(15)]
    assert average_precision_at_k(relevant, relevant[:12]) == pytest.approx(1.0)
    # only one hit at position 1 -> 1/12
    assert average_precision_at_k(relevant, ["r0"] + ["x"] * 11) == pytest.approx(1 / 12)


def test_ap_duplicates_count_once_and_keep_their_position() -> None:
    # a, a, b with {a, b}: the second a scores nothing, b is a hit at position 3
    assert average_precision_at_k({"a", "b"}, ["a", "a", "b"]) == pytest.approx((1 + 2 / 3) / 2)
    # a list of one relevant item repeated can never exceed 1/|R|
    assert average_precision_at_k({"a", "b"}, ["a"] * 12) == pytest.approx(0.5)


def test_ap_ignores_positions_after_k() -> None:
    predicted = [f"x{i}" for i in range(12)] + ["a"]
    assert average_precision_at_k({"a"}, predicted) == 0.0
    assert average_precision_at_k({"a"}, predicted, k=13) == pytest.approx(1 / 13)


def test_ap_empty_relevant_set_is_zero() -> None:
    assert average_precision_at_k(set(), ["a"]) == 0.0


def test_ndcg_hand_computed() -> None:
    dcg = 1 / math.log2(3) + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k({"a", "b"}, ["x", "a", "b"]) == pytest.approx(dcg / ideal)
    assert ndcg_at_k({"a", "b"}, ["a", "b"]) == pytest.approx(1.0)


def test_ndcg_duplicates_count_once() -> None:
    assert ndcg_at_k({"a", "b"}, ["a", "a"]) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_ideal_uses_at_most_k_hits() -> None:
    relevant = [f"r{i}" for i in range(20)]
    assert ndcg_at_k(relevant, relevant[:12]) == pytest.approx(1.0)


def test_list_metrics_averages_over_buying_customers_only() -> None:
    actual = {"c1": {"a"}, "c2": {"a", "b", "c"}, "c3": set(), "c4": {"z"}}
    predicted = {
        "c1": ["x", "a"],  # AP 0.5
        "c2": ["a", "x", "b", "y"],  # AP (1 + 2/3) / 3
        "c3": ["a"],  # bought nothing: not averaged
        # c4 has no list: counts as 0
        "c5": ["a"],  # not in actual: ignored
    }
    out = list_metrics(actual, predicted)
    assert out["n_customers"] == 3
    assert out["map_at_12"] == pytest.approx((0.5 + (1 + 2 / 3) / 3 + 0.0) / 3)
    ndcg_c1 = (1 / math.log2(3)) / 1.0
    ndcg_c2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert out["ndcg_at_12"] == pytest.approx((ndcg_c1 + ndcg_c2 + 0.0) / 3)


def test_list_metrics_key_names_follow_k() -> None:
    out = list_metrics({"c": {"a"}}, {"c": ["a"]}, k=5)
    assert out == {"map_at_5": 1.0, "ndcg_at_5": 1.0, "n_customers": 1}


def _many_customers(n: int = 300) -> tuple[dict, dict]:
    """Customers whose APs are many different fractions (hits at varied places of varied lists)."""
    rng = np.random.default_rng(3)
    actual, predicted = {}, {}
    for i in range(n):
        bought = [f"a{j}" for j in rng.choice(40, size=int(rng.integers(1, 15)), replace=False)]
        actual[f"c{i}"] = bought
        predicted[f"c{i}"] = [f"a{j}" for j in rng.permutation(40)[:12]]
    return actual, predicted


def test_list_metrics_do_not_depend_on_customer_order() -> None:
    # a group-by may hand customers over in any order; the means must be bit-identical
    actual, predicted = _many_customers()
    base = list_metrics(actual, predicted)
    for seed in range(5):
        keys = list(actual)
        np.random.default_rng(seed).shuffle(keys)
        assert list_metrics({c: actual[c] for c in keys}, predicted) == base


def test_sorted_groups_orders_stably_and_marks_where_each_id_starts() -> None:
    order, starts = sorted_groups(np.array([5, 3, 5, 1, 3, 5]))
    assert order.tolist() == [3, 1, 4, 0, 2, 5]
    assert starts.tolist() == [0, 1, 3, 6]
    order, starts = sorted_groups(np.array([], dtype=np.int64))
    assert order.tolist() == [] and starts.tolist() == [0]


def test_customer_order_sorts_ids_and_refuses_a_customer_scored_twice() -> None:
    assert customer_order(["c", "a", "b"]).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="'a' was scored twice"):
        customer_order(["c", "a", "b", "a"])
