"""Classification metrics of the ranking step, on labelled (customer, article) rows.

Precision, recall, F1, ROC AUC and scikit-learn's classification report — what the
reference course reports. They say how well the model separates the rows it was given,
which depends on how the negatives were chosen; the list metrics of the task the ranker
serves (MAP@12, NDCG@12 of re-ranked candidate lists) are hmrec.retrieval.list_metrics'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
