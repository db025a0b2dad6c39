"""Per-list ranking metrics: the project's one definition of AP@K, NDCG@K, Recall@K, Precision@K.

Why one module: retrieval, ranking and the evaluation harness report the same metric
names, so they must compute the same numbers (docs/metrics.md). It lives in the
retrieval package because that is the highest layer all three may import.

Two forms of the same formulas:

* lists of article ids (ranking, evaluation): one customer with relevant set R
  (distinct articles bought in the window) and prediction list P (first K entries).
  MAP@12 follows the Kaggle H&M competition::

      AP@K = 1 / min(|R|, K) * sum_{k=1..K} P(k) * rel(k)

  where rel(k) is 1 when P[k] is relevant and was not already listed earlier in P (a
  duplicate keeps its position but never scores twice) and P(k) is the number of
  scoring hits in the first k positions divided by k. NDCG@K uses the same binary,
  duplicate-once relevance with log2 discounts, normalised by the ideal list of
  min(|R|, K) hits. Recall@K = |R ∩ P[:K]| / |R|.
* ranks (retrieval, scored against the whole catalogue): the 0-based position of each
  relevant article in the query's full ranking; a hit at K is rank < K, and Recall@K,
  Precision@K (hits / K), NDCG@K and MRR follow from the ranks alone (``per_query_metrics``).

Means are over customers with at least one purchase; list-form means are exactly
rounded sums (``math.fsum``), so they do not depend on the order customers arrive in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: The Kaggle competition's list length.
K_DEFAULT = 12


def sorted_groups(ids: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): positions of `ids` sorted by id (stable), and where each id's run
    begins in that order, with len(ids) appended; group g is ``order[starts[g]:starts[g+1]]``.

    The one sort-and-group of ids behind per-query metrics, per-query random ranks and
    the customer order of per-customer scores.
    """
    keys = np.asarray(ids)
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    new = np.ones(len(ranked), dtype=bool)
    new[1:] = ranked[1:] != ranked[:-1]
    return order, np.append(np.flatnonzero(new), len(ranked))


# ---------------------------------------------------------------------------------------
# One list of article ids
# ---------------------------------------------------------------------------------------


def _hits(actual: set, predicted: Sequence, k: int) -> list[bool]:
    """Per-position relevance of the first k predictions; a repeated item never scores again."""
    seen: set = set()
    hits: list[bool] = []
    for item in list(predicted)[:k]:
        hit = item in actual and item not in seen
        seen.add(item)
        hits.append(hit)
    return hits


def average_precision_at_k(actual: Iterable, predicted: Sequence, k: int = K_DEFAULT) -> float:
    """AP@k of one customer (Kaggle definition); 0.0 when nothing was bought."""
    relevant = set(actual)
    if not relevant or k <= 0:
        return 0.0
    score = 0.0
    n_hits = 0
    for position, hit in enumerate(_hits(relevant, predicted, k), start=1):
        if hit:
            n_hits += 1
            score += n_hits / position
    return score / min(len(relevant), k)


def ndcg_at_k(actual: Iterable, predicted: Sequence, k: int = K_DEFAULT) -> float:
    """Binary-relevance NDCG@k of one customer; 0.0 when nothing was bought."""
    relevant = set(actual)
    if not relevant or k <= 0:
        return 0.0
    dcg = sum(
        1.0 / math.log2(position + 1)
        for position, hit in enumerate(_hits(relevant, predicted, k), start=1)
        if hit
    )
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def recall_at_k(actual: Iterable, predicted: Sequence, k: int) -> float:
    """Share of the customer's distinct purchases found in the first k predictions; 0.0 when none bought."""
    relevant = set(actual)
    if not relevant or k <= 0:
        return 0.0
    return len(relevant.intersection(list(predicted)[:k])) / len(relevant)


# ---------------------------------------------------------------------------------------
# Many customers' lists
# ---------------------------------------------------------------------------------------


class ListScores:
    """Per-customer MAP@k, Recall@k and NDCG@k, so customers can be scored batch by batch
    (a FULL test week's lists need not be held at once).

    The per-customer values are kept (three floats each, with the customer id) and summed
    exactly at the end, so the means do not depend on the order customers arrive in;
    `per_customer()` hands them, in customer-id order, to the bootstrap intervals.
    """

    def __init__(self, k: int = K_DEFAULT) -> None:
        self.k = k
        self.values: tuple[list[float], list[float], list[float]] = ([], [], [])
        self.customers: list[str] = []

    def add(self, actual: Mapping[str, Iterable], predicted: Mapping[str, Sequence]) -> None:
        """Score the customers of `actual` (those with no purchase are skipped; a customer
        missing from `predicted` scores 0: the system failed them)."""
        k = self.k
        for customer, bought in actual.items():
            relevant = set(bought)
            if not relevant:
                continue
            ranked = list(predicted.get(customer, ()))[:k]
            self.customers.append(customer)
            self.values[0].append(average_precision_at_k(relevant, ranked, k))
            self.values[1].append(recall_at_k(relevant, ranked, k))
            self.values[2].append(ndcg_at_k(relevant, ranked, k))

    @property
    def n(self) -> int:
        return len(self.values[0])

    def means(self) -> dict[str, float]:
        n, k = self.n, self.k
        ap, rec, ndcg = (math.fsum(v) / n if n else 0.0 for v in self.values)
        return {f"map_at_{k}": ap, f"recall_at_{k}": rec, f"ndcg_at_{k}": ndcg}

    def per_customer(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(customer ids sorted, {metric: values in that order}): what the intervals resample."""
        order = customer_order(self.customers)
        k = self.k
        names = (f"map_at_{k}", f"recall_at_{k}", f"ndcg_at_{k}")
        return ([self.customers[i] for i in order],
                {name: np.asarray(v, dtype=np.float64)[order] for name, v in zip(names, self.values, strict=True)})


def customer_order(customers: Sequence[str]) -> np.ndarray:
    """Positions of `customers` in sorted order (a customer scored twice is an error: its
    values would count twice in the means and the intervals)."""
    order, starts = sorted_groups(np.asarray(customers, dtype=object))
    twice = np.flatnonzero(np.diff(starts) > 1)
    if twice.size:
        raise ValueError(f"customer {customers[int(order[starts[twice[0]]])]!r} was scored twice")
    return order.astype(np.int64)


def list_metrics(
    actual: Mapping[str, Iterable], predicted: Mapping[str, Sequence], k: int = K_DEFAULT
) -> dict[str, float]:
    """Mean MAP@k and NDCG@k over customers with at least one purchase, and their number:
    the ranking report's keys (``map_at_{k}``, ``ndcg_at_{k}``, ``n_customers``)."""
    scores = ListScores(k)
    scores.add(actual, predicted)
    means = scores.means()
    return {f"map_at_{k}": means[f"map_at_{k}"], f"ndcg_at_{k}": means[f"ndcg_at_{k}"], "n_customers": scores.n}


# ---------------------------------------------------------------------------------------
# Ranks against the whole catalogue
# ---------------------------------------------------------------------------------------


def per_query_metrics(query_index: np.ndarray, ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean Recall@K, Precision@K, NDCG@K and MRR over queries with >= 1 relevant target.

    Targets of a query must be distinct items (one rank per relevant item).
    """
    qi = np.asarray(query_index, dtype=np.int64)
    ranks = np.asarray(ranks, dtype=np.int64)
    if qi.size == 0:
        return {**{f"{m}_at_{k}": float("nan") for k in ks for m in ("recall", "precision", "ndcg")}, "mrr": float("nan")}
    order, starts = sorted_groups(qi)
    n_q = len(starts) - 1
    q = np.empty(qi.size, dtype=np.int64)
    q[order] = np.repeat(np.arange(n_q), np.diff(starts))
    n_rel = np.bincount(q, minlength=n_q).astype(np.float64)
    out: dict[str, float] = {}
    gain = 1.0 / np.log2(ranks + 2.0)
    for k in ks:
        hit = ranks < k
        hits = np.bincount(q, weights=hit.astype(np.float64), minlength=n_q)
        dcg = np.bincount(q, weights=np.where(hit, gain, 0.0), minlength=n_q)
        ideal_cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))])
        idcg = ideal_cum[np.minimum(n_rel, k).astype(np.int64)]
        out[f"recall_at_{k}"] = float(np.mean(hits / n_rel))
        out[f"precision_at_{k}"] = float(np.mean(hits / k))
        out[f"ndcg_at_{k}"] = float(np.mean(dcg / idcg))
    best = np.full(n_q, np.iinfo(np.int64).max)
    np.minimum.at(best, q, ranks)
    out["mrr"] = float(np.mean(1.0 / (best + 1.0)))
    return out
