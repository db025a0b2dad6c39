"""Classification metrics of the ranking step against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hmrec.ranking.classification import (
    classification_metrics,
    classification_report_text,
)


def test_classification_metrics_hand_computed() -> None:
    y = [1, 0, 1, 0]
    s = [0.9, 0.6, 0.4, 0.1]  # predicted 1, 1, 0, 0
    out = classification_metrics(y, s)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(0.5)
    # positive/negative pairs ordered right: (.9>.6), (.9>.1), (.4>.1); wrong: (.4<.6)
    assert out["roc_auc"] == pytest.approx(0.75)


def test_classification_metrics_one_class_gives_nan_auc() -> None:
    out = classification_metrics([0, 0], [0.2, 0.7])
    assert math.isnan(out["roc_auc"])
    assert out["precision"] == 0.0


def test_classification_metrics_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], [0.1])


def test_classification_report_mentions_both_classes() -> None:
    text = classification_report_text(np.array([1, 0, 1, 0]), np.array([0.9, 0.6, 0.4, 0.1]))
    assert "precision" in text and "recall" in text
    lines = [line.split() for line in text.splitlines() if line.strip()]
    assert any(parts[:3] == ["1", "0.5000", "0.5000"] for parts in lines)
