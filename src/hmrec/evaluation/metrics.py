"""List metrics the harness needs beyond the ranking package's MAP@K and NDCG@K.

MAP@K (Kaggle definition) and NDCG@K come from ``hmrec.ranking.metrics`` so the
ranking step and the end-to-end evaluation compute the same numbers. Recall@K and
the candidate set's reachable share are defined here (the retrieval package had no
per-customer Recall@K on lists of article ids when this was written).

Definitions (one customer, relevant set R = distinct articles bought in the window,
list P; a repeated entry of P never scores twice):

* Recall@K = |R ∩ P[:K]| / |R|
* reachable share (pooled, not per customer) = the share of all distinct
  (customer, article) test purchases whose article is in that customer's candidate
  list: the ceiling on what any ranker over those candidates can hit.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from hmrec.ranking.metrics import average_precision_at_k, ndcg_at_k


def recall_at_k(actual: Iterable, predicted: Sequence, k: int) -> float:
    """Share of the customer's distinct purchases found in the first k predictions; 0.0 when none bought."""
    relevant = set(actual)
    if not relevant or k <= 0:
        return 0.0
    return len(relevant.intersection(list(predicted)[:k])) / len(relevant)


class ListScores:
    """Per-customer MAP@k, Recall@k and NDCG@k, so customers can be scored batch by batch
    (a FULL test week's lists need not be held at once); `means()` is `list_scores` of all.

    The per-customer values are kept (three floats each, with the customer id) and summed
    exactly at the end, so the means do not depend on the order customers arrive in;
    `per_customer()` hands them, in customer-id order, to the bootstrap intervals.
    """

    def __init__(self, k: int = 12) -> None:
        self.k = k
        self.values: tuple[list[float], list[float], list[float]] = ([], [], [])
        self.customers: list[str] = []

    def add(self, actual: Mapping[str, Iterable], predicted: Mapping[str, Sequence]) -> None:
        """Score the customers of `actual` (those with no purchase are skipped)."""
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
        order = _order(self.customers)
        k = self.k
        names = (f"map_at_{k}", f"recall_at_{k}", f"ndcg_at_{k}")
        return ([self.customers[i] for i in order],
                {name: np.asarray(v, dtype=np.float64)[order] for name, v in zip(names, self.values, strict=True)})


def _order(customers: Sequence[str]) -> np.ndarray:
    """Positions of `customers` in sorted order (a customer scored twice is an error: its
    values would count twice in the means and the intervals)."""
    order = sorted(range(len(customers)), key=customers.__getitem__)
    for a, b in zip(order, order[1:]):
        if customers[a] == customers[b]:
            raise ValueError(f"customer {customers[a]!r} was scored twice")
    return np.asarray(order, dtype=np.int64)


def list_scores(
    actual: Mapping[str, Iterable],
    predicted: Mapping[str, Sequence],
    k: int = 12,
) -> dict[str, float]:
    """Mean MAP@k, Recall@k and NDCG@k over customers with at least one purchase in `actual`.

    A customer missing from `predicted` scores 0 on all three (the system failed them).
    """
    scores = ListScores(k)
    scores.add(actual, predicted)
    return scores.means()


class CandidateScores:
    """Running sums of candidate Recall@K (per customer, at every cut-off) and of the pooled
    reachable share; `means()` is `candidate_scores` of all customers added."""

    def __init__(self, k: int = 100, curve: Sequence[int] = ()) -> None:
        self.k = k
        self.cutoffs = sorted({*(c for c in curve if 0 < c <= k), k})
        self.n = 0
        self.recalls: dict[int, list[float]] = {c: [] for c in self.cutoffs}
        self.customers: list[str] = []
        self.reached = 0
        self.total = 0

    def add(self, actual: Mapping[str, Iterable], candidates: Mapping[str, Sequence]) -> None:
        for customer, bought in actual.items():
            relevant = set(bought)
            if not relevant:
                continue
            # where each relevant article first appears: |relevant ∩ listed[:c]| for every
            # cut-off c from one pass over the list (a FULL test week has ~90k customers)
            first: dict = {}
            for i, article in enumerate(list(candidates.get(customer, ()))[: self.k]):
                if article in relevant and article not in first:
                    first[article] = i
            positions = sorted(first.values())
            self.n += 1
            self.customers.append(customer)
            for c in self.cutoffs:
                self.recalls[c].append(bisect_left(positions, c) / len(relevant))
            self.reached += len(positions)
            self.total += len(relevant)

    def means(self) -> dict[str, float]:
        # exact sums: the means do not depend on the order customers arrive in
        out = {f"recall_at_{c}": (math.fsum(v) / self.n if self.n else 0.0) for c, v in self.recalls.items()}
        out["reachable_share"] = self.reached / self.total if self.total else 0.0
        return out

    def per_customer(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """(customer ids sorted, {recall_at_C: values in that order}) for every cut-off C
        (the reachable share is pooled over purchases, not a mean over customers: no values)."""
        order = _order(self.customers)
        return ([self.customers[i] for i in order],
                {f"recall_at_{c}": np.asarray(v, dtype=np.float64)[order] for c, v in self.recalls.items()})


def candidate_scores(
    actual: Mapping[str, Iterable],
    candidates: Mapping[str, Sequence],
    k: int = 100,
    curve: Sequence[int] = (),
) -> dict[str, float]:
    """Recall@k (mean over customers) and reachable share (pooled over purchases) of candidate lists.

    `curve` adds ``recall_at_{K}`` for further cut-offs K <= k (for Recall@K plots).
    """
    scores = CandidateScores(k, curve)
    scores.add(actual, candidates)
    return scores.means()
