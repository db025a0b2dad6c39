"""Ranking and classification metrics for the ranking step.

Two families, because they answer different questions:

* classification metrics (precision, recall, F1, ROC AUC, the classification report)
  on labelled (customer, article) rows — what the reference course reports; they say
  how well the model separates the rows it was given, which depends on how the
  negatives were chosen;
* list metrics (NDCG@K, MAP@K) on each customer's re-ranked candidate list — the task
  the ranker serves. These are averaged over customers with at least one purchase in
  the evaluation window (docs/metrics.md).

MAP@12 follows the Kaggle H&M competition: for one customer with relevant set R
(distinct articles bought in the window) and prediction list P (first K entries)

    AP@K = 1 / min(|R|, K) * sum_{k=1..K} P(k) * rel(k)

where rel(k) is 1 when P[k] is relevant and was not already listed earlier in P
(a duplicate keeps its position but never scores twice) and P(k) is the number of
scoring hits in the first k positions divided by k. NDCG@K uses the same binary,
duplicate-once relevance with log2 discounts, normalised by the ideal list of
min(|R|, K) hits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: The Kaggle competition's list length.
K_DEFAULT = 12


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


def list_metrics(
    actual: Mapping[str, Iterable],
    predicted: Mapping[str, Sequence],
    k: int = K_DEFAULT,
) -> dict[str, float]:
    """Mean MAP@k and NDCG@k over customers with at least one purchase in `actual`.

    A customer with purchases but no prediction list scores 0 (the system failed
    them); customers only in `predicted` are ignored (nothing to hit). Keys of the
    result follow the report contract of docs/metrics.md: ``map_at_{k}``, ``ndcg_at_{k}``, plus
    ``n_customers``.
    """
    aps: list[float] = []
    ndcgs: list[float] = []
    for customer, bought in actual.items():
        relevant = set(bought)
        if not relevant:
            continue
        ranked = predicted.get(customer, ())
        aps.append(average_precision_at_k(relevant, ranked, k))
        ndcgs.append(ndcg_at_k(relevant, ranked, k))
    n = len(aps)
    # fsum is exactly rounded, so the means do not depend on the order of `actual`
    # (a group-by's order can change from run to run; np.mean's pairwise sum follows it)
    return {
        f"map_at_{k}": math.fsum(aps) / n if n else 0.0,
        f"ndcg_at_{k}": math.fsum(ndcgs) / n if n else 0.0,
        "n_customers": n,
    }


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Precision, recall, F1 (positive class, prediction = score >= threshold) and ROC AUC.

    ROC AUC is NaN when only one class is present: any number there would be made up.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(y_score, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"y_true has shape {y.shape} but y_score has shape {s.shape}")
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score  # lazily: see leakage.py

    pred = (s >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, pred, average="binary", zero_division=0
    )
    auc = float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "roc_auc": auc,
    }


def classification_report_text(
    y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> str:
    """scikit-learn's per-class report, as the reference course logs it."""
    from sklearn.metrics import classification_report

    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(y_score, dtype=float) >= threshold).astype(int)
    return str(classification_report(y, pred, labels=[0, 1], digits=4, zero_division=0))
