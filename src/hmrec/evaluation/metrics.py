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

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from hmrec.ranking.metrics import average_precision_at_k, ndcg_at_k


def recall_at_k(actual: Iterable, predicted: Sequence, k: int) -> float:
    """Share of the customer's distinct purchases found in the first k predictions; 0.0 when none bought."""
    relevant = set(actual)
    if not relevant or k <= 0:
        return 0.0
    return len(relevant.intersection(list(predicted)[:k])) / len(relevant)


def list_scores(
    actual: Mapping[str, Iterable],
    predicted: Mapping[str, Sequence],
    k: int = 12,
) -> dict[str, float]:
    """Mean MAP@k, Recall@k and NDCG@k over customers with at least one purchase in `actual`.

    A customer missing from `predicted` scores 0 on all three (the system failed them).
    """
    aps: list[float] = []
    recalls: list[float] = []
    ndcgs: list[float] = []
    for customer, bought in actual.items():
        relevant = set(bought)
        if not relevant:
            continue
        ranked = list(predicted.get(customer, ()))[:k]
        aps.append(average_precision_at_k(relevant, ranked, k))
        recalls.append(recall_at_k(relevant, ranked, k))
        ndcgs.append(ndcg_at_k(relevant, ranked, k))
    mean = (lambda xs: float(np.mean(xs)) if xs else 0.0)
    return {f"map_at_{k}": mean(aps), f"recall_at_{k}": mean(recalls), f"ndcg_at_{k}": mean(ndcgs)}


def candidate_scores(
    actual: Mapping[str, Iterable],
    candidates: Mapping[str, Sequence],
    k: int = 100,
    curve: Sequence[int] = (),
) -> dict[str, float]:
    """Recall@k (mean over customers) and reachable share (pooled over purchases) of candidate lists.

    `curve` adds ``recall_at_{K}`` for further cut-offs K <= k (for Recall@K plots).
    """
    cutoffs = sorted({*(c for c in curve if 0 < c <= k), k})
    recalls: dict[int, list[float]] = {c: [] for c in cutoffs}
    reached = 0
    total = 0
    for customer, bought in actual.items():
        relevant = set(bought)
        if not relevant:
            continue
        listed = list(candidates.get(customer, ()))[:k]
        for c in cutoffs:
            recalls[c].append(len(relevant.intersection(listed[:c])) / len(relevant))
        reached += len(relevant.intersection(listed))
        total += len(relevant)
    out = {f"recall_at_{c}": float(np.mean(v)) if v else 0.0 for c, v in recalls.items()}
    out["reachable_share"] = reached / total if total else 0.0
    return out
