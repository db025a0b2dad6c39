"""Checks that a labelled ranking frame cannot tell the classes apart by construction.

The Hopsworks H&M tutorial's dataset gave every positive month features and every negative
nulls, so "is month_sin null" alone identified the label. These checks measure, per
feature, how differently it is MISSING in the two classes and how well it alone
separates them (single-feature ROC AUC, folded to >= 0.5). On a world where
purchases are independent of everything (tests' null world), both must be near
their no-information values; on real data a high AUC can be honest signal (e.g.
repurchases), but a null-share gap never is, so the trainer reports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from hmrec.ranking.model import categorical_columns


def _folded_auc(y: np.ndarray, s: np.ndarray) -> float:
    if len(np.unique(y)) < 2 or len(np.unique(s)) < 2:
        return 0.5
    from sklearn.metrics import roc_auc_score  # here, not at import: scikit-learn costs the service ~2.7 s at start-up

    auc = float(roc_auc_score(y, s))
    return max(auc, 1.0 - auc)


def _encoded(df: pl.DataFrame, column: str, label: str, seed: int) -> np.ndarray:
    """Out-of-fold positive rate of each category (null is a category): an honest score.

    Vectorised (category codes + bincount): a Python loop over categories took minutes
    on a FULL training frame (2.3M rows)."""
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, 2, df.height)
    codes = (
        df.select(pl.col(column).cast(pl.String).fill_null("<null>").rank("dense"))
        .to_series().to_numpy().astype(np.int64) - 1
    )
    n_codes = int(codes.max()) + 1 if codes.size else 0
    y = df[label].to_numpy().astype(float)
    out = np.empty(df.height)
    for f in (0, 1):
        fit, apply = fold != f, fold == f
        prior = y[fit].mean() if fit.any() else 0.0
        counts = np.bincount(codes[fit], minlength=n_codes)
        sums = np.bincount(codes[fit], weights=y[fit], minlength=n_codes)
        rates = np.divide(sums, counts, out=np.full(n_codes, prior), where=counts > 0)
        out[apply] = rates[codes[apply]]
    return out


def null_shares(df: pl.DataFrame, features: Sequence[str], label: str = "label") -> dict[str, tuple[float, float]]:
    """{feature: (null share among positives, among negatives)} in one Polars pass."""
    if not features:
        return {}
    pos = pl.col(label) == 1
    row = df.select(
        *(pl.col(c).is_null().filter(pos).mean().alias(f"p{i}") for i, c in enumerate(features)),
        *(pl.col(c).is_null().filter(~pos).mean().alias(f"n{i}") for i, c in enumerate(features)),
    ).row(0)
    n = len(features)
    return {c: (float(row[i] or 0.0), float(row[n + i] or 0.0)) for i, c in enumerate(features)}


def feature_separation(
    df: pl.DataFrame, features: Sequence[str], label: str = "label", seed: int = 0
) -> pl.DataFrame:
    """Per feature: null share among positives and negatives, their gap, and the single-feature AUC.

    Numeric features are scored by value with nulls below every value (so a
    missing-value pattern shows up in the AUC too); categorical ones by out-of-fold
    target encoding with null as its own category.
    """
    y = df[label].to_numpy().astype(int)
    cats = set(categorical_columns(df, features))
    shares = null_shares(df, features, label)
    rows = []
    for c in features:
        share_pos, share_neg = shares[c]
        if c in cats:
            score = _encoded(df, c, label, seed)
        else:
            values = df[c].cast(pl.Float64).to_numpy()
            finite = values[~np.isnan(values)]
            floor = (finite.min() - 1.0) if finite.size else 0.0
            score = np.where(np.isnan(values), floor, values)
        rows.append(
            {
                "feature": c,
                "null_share_positive": share_pos,
                "null_share_negative": share_neg,
                "null_share_gap": abs(share_pos - share_neg),
                "auc": _folded_auc(y, score),
            }
        )
    return pl.DataFrame(rows).sort("auc", descending=True)


def null_pattern_leaks(
    df: pl.DataFrame, features: Sequence[str], label: str = "label", max_gap: float = 0.05
) -> dict[str, float]:
    """{feature: null-share gap} for features missing much more often in one class, largest first.

    Only the null shares are needed (feature_separation's null_share_gap, without its
    per-feature AUCs: those took most of the check's minutes at FULL size)."""
    gaps = {c: abs(p - n) for c, (p, n) in null_shares(df, features, label).items()}
    bad = sorted(((c, g) for c, g in gaps.items() if g > max_gap), key=lambda cg: -cg[1])
    return dict(bad)
