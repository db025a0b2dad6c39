"""Train the ranking model on windows the retrieval model did not see; evaluate it honestly.

Time layout (all windows are parameters; `default_windows` gives the usual one):

    ... retrieval training data ... | ranking train windows | validation window |
                                    ^ retrieval_train_end   ^ validation.start

Ranking rows come from windows AFTER the retrieval model's training data, with
features as of each window's start, so the two-tower score is out-of-sample there
just as it is at serving time. Early stopping uses a customer hold-out of the
training rows (default), so the validation window is only ever measured, never
fitted to.

The numbers that matter are NDCG@12 / MAP@12 of each validation customer's
retrieval candidates re-ranked by the model, next to the same candidates ordered by
two-tower score and by recent popularity, and to global popularity (top-12 of the
last week). Classification metrics (precision, recall, F1, ROC AUC and the
reference's classification report) are reported too, on validation rows built the
same way as the training rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.ranking.classification import (
    classification_metrics,
    classification_report_text,
)
from hmrec.ranking.dataset import (
    ID_COLUMNS,
    LABEL,
    Window,
    build_ranking_dataset,
    feature_columns,
    feature_rows,
)
from hmrec.ranking.interactions import TWO_TOWER_SCORE, PairScorer
from hmrec.ranking.leakage import null_pattern_leaks
from hmrec.ranking.model import RankingModel
from hmrec.ranking.negatives import CandidateFn, candidate_frame
from hmrec.retrieval.best_sellers import best_sellers
from hmrec.retrieval.list_metrics import K_DEFAULT, list_metrics
from hmrec.store.atomic import write_json

Progress = Callable[[str], None]
IMPORTANCE_PLOT = "ranking_feature_importance.png"
REPORT_FILE = "ranking.json"


def default_windows(
    validation_start: date, n_train_weeks: int = 1, days: int = 7
) -> tuple[list[Window], Window, date]:
    """(train windows, validation window, retrieval_train_end) for the usual layout.

    The retrieval model must train on data before ``retrieval_train_end`` (the start
    of the first ranking window) for its scores to be out-of-sample on ranking rows.
    """
    validation = Window(validation_start, validation_start + timedelta(days=days))
    train = Window.weeks_before(validation_start, n_train_weeks, days)
    return train, validation, train[0].start


@dataclass
class RankingResult:
    """What `train_ranking` returns: the model, its report (docs/metrics.md) and extras."""

    model: RankingModel
    report: dict
    feature_importance: dict[str, float]
    train_rows: int
    validation_rows: int
    variants: dict[str, RankingModel] = field(default_factory=dict)


def _holdout_split(
    df: pl.DataFrame, share: float, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows by customer (all of a customer's rows on one side), deterministic by seed."""
    customers = df["customer_id"].unique().sort()
    rng = np.random.default_rng(seed)
    n_hold = int(round(customers.len() * share))
    if n_hold == 0 or n_hold >= customers.len():
        return df, df.head(0)
    held = customers.gather(np.sort(rng.choice(customers.len(), n_hold, replace=False)))
    mask = df["customer_id"].is_in(held.implode())
    return df.filter(~mask), df.filter(mask)


def ranked_lists(
    df: pl.DataFrame, score: str, k: int = K_DEFAULT, tie_break: str | None = None
) -> dict[str, list[str]]:
    """Each customer's top-k article ids by descending `score` (ties: ascending `tie_break`)."""
    by = [score] + ([tie_break] if tie_break else []) + ["article_id"]
    desc = [True] + ([False] if tie_break else []) + [False]
    top = (
        df.sort(by, descending=desc)
        .group_by("customer_id", maintain_order=True)
        .agg(pl.col("article_id").head(k))
    )
    return dict(zip(top["customer_id"].to_list(), top["article_id"].to_list()))


def purchases_by_customer(
    transactions: pl.DataFrame | pl.LazyFrame, window: Window
) -> dict[str, set[str]]:
    """Distinct articles each customer bought in the window (the relevant sets)."""
    bought = (
        transactions.lazy()
        .filter((pl.col("t_dat") >= window.start) & (pl.col("t_dat") < window.end))
        .group_by("customer_id")
        .agg(pl.col("article_id").unique())
        .collect()
    )
    return {c: set(a) for c, a in zip(bought["customer_id"].to_list(), bought["article_id"].to_list())}


def candidate_features(
    transactions: pl.DataFrame | pl.LazyFrame,
    articles: pl.DataFrame,
    customers: pl.DataFrame | None,
    customer_ids: Sequence[str],
    as_of: date,
    candidates: CandidateFn,
    k: int,
    pair_scorer: PairScorer | None = None,
) -> pl.DataFrame:
    """Feature rows for each customer's top-k candidates as of `as_of` (what serving re-ranks).

    Keeps retrieval_score and retrieval_rank beside the features for the baselines.
    The model's two_tower_score comes from `pair_scorer` when given (the same scorer
    as in training), else from the candidate list's own score.
    """
    cands = candidate_frame(candidates, list(customer_ids), as_of, k)
    pairs = cands if pair_scorer is not None else cands.with_columns(
        pl.col("retrieval_score").alias(TWO_TOWER_SCORE)
    )
    return feature_rows(pairs, transactions, articles, customers, pair_scorer)


def evaluate_reranking(
    models: dict[str, RankingModel],
    cand_rows: pl.DataFrame,
    actual: dict[str, set[str]],
    popular: Sequence[str],
    k: int = K_DEFAULT,
) -> dict[str, dict[str, float]]:
    """MAP@k / NDCG@k per system over the same candidates and the same customers.

    Systems: each model in `models` (candidates re-ranked by it), ``two_tower``
    (candidates by retrieval score), ``popularity_candidates`` (candidates by article
    sales in the last 7 days) and ``popularity`` (the standard baseline: last week's
    top-k for everyone, candidates or not).
    Customers who bought something but got no candidates count as zeros everywhere.
    """
    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        scored = cand_rows.with_columns(pl.Series("_score", model.predict(cand_rows)))
        out[name] = list_metrics(actual, ranked_lists(scored, "_score", k, "retrieval_rank"), k)
    two_tower = ranked_lists(cand_rows.with_columns(-pl.col("retrieval_rank").alias("_r")), "_r", k)
    out["two_tower"] = list_metrics(actual, two_tower, k)
    out["popularity_candidates"] = list_metrics(
        actual, ranked_lists(cand_rows, "article_sales_7d", k, "retrieval_rank"), k
    )
    out["popularity"] = list_metrics(actual, {c: list(popular) for c in actual}, k)
    return out


def candidate_recall(cand_rows: pl.DataFrame, actual: dict[str, set[str]]) -> float:
    """Share of (customer, bought article) pairs present among the candidates: the ceiling."""
    total = sum(len(v) for v in actual.values())
    if total == 0:
        return 0.0
    truth = pl.DataFrame(
        {
            "customer_id": [c for c, arts in actual.items() for _ in arts],
            "article_id": [a for arts in actual.values() for a in arts],
        },
        schema={"customer_id": pl.String, "article_id": pl.String},
    )
    hit = truth.join(cand_rows.select("customer_id", "article_id"), on=["customer_id", "article_id"], how="semi")
    return hit.height / total


def plot_feature_importance(importance: dict[str, float], path: Path, top: int = 30) -> Path:
    """Horizontal bar chart of the largest shares, written as PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(importance.items())[:top][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(items) + 1.5))
    ax.barh([n for n, _ in items], [v for _, v in items], color="#3b6ea5")
    ax.set_xlabel("share of importance (PredictionValuesChange)")
    ax.set_title("Ranking model feature importance")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: dict, reports_dir: Path) -> Path:
    """Write <reports_dir>/ranking.json atomically."""
    return write_json(Path(reports_dir) / REPORT_FILE, report)


def _fit(
    kind: str,
    params: dict,
    train: pl.DataFrame,
    valid_full: pl.DataFrame | None,
    early_stopping: str,
    holdout_share: float,
    seed: int,
) -> RankingModel:
    features = feature_columns(train)
    if early_stopping == "holdout":
        fit_rows, stop_rows = _holdout_split(train, holdout_share, seed)
    elif early_stopping == "validation":
        fit_rows, stop_rows = train, valid_full
    else:
        fit_rows, stop_rows = train, None
    if kind == "ranker":
        fit_rows = fit_rows.sort("as_of", "customer_id", maintain_order=True)
        if stop_rows is not None:
            stop_rows = stop_rows.sort("as_of", "customer_id", maintain_order=True)
    model = RankingModel(kind=kind, **params)
    return model.fit(fit_rows, features, valid=stop_rows)


def comparisons_skipped(
    train_rows: int, max_rows: int | None, yetirank: bool, random_negatives: bool
) -> str | None:
    """Why the comparison models are not fitted (None: they are, or none was asked for)."""
    asked = [name for name, on in (("YetiRank", yetirank), ("random negatives", random_negatives)) if on]
    if not asked or max_rows is None or train_rows <= max_rows:
        return None
    return (f"comparison models ({', '.join(asked)}) skipped: {train_rows:,} training rows > "
            f"RANKING_COMPARE_MAX_ROWS {max_rows:,}")


def train_ranking(
    transactions: pl.DataFrame | pl.LazyFrame,
    articles: pl.DataFrame,
    customers: pl.DataFrame | None,
    train_windows: Sequence[Window],
    validation_window: Window,
    candidates: CandidateFn,
    pair_scorer: PairScorer | None = None,
    negatives: str = "retrieval",
    positives: str | None = None,
    k: int = 100,
    per_positive: int = 10,
    model_params: dict | None = None,
    retrieval_train_end: date | None = None,
    early_stopping: str = "holdout",
    holdout_share: float = 0.1,
    compare_random_negatives: bool = True,
    yetirank: bool = False,
    compare_max_rows: int | None = None,
    negatives_per_customer: int | None = None,
    max_eval_customers: int | None = None,
    max_train_customers: int | None = None,
    seed: int = 42,
    reports_dir: Path | None = None,
    progress: Progress | None = None,
) -> RankingResult:
    """Build the datasets, fit CatBoost, evaluate on the validation window, write the report.

    candidates: the retrieval stage, ``candidates(customer_ids, as_of, k)`` (e.g.
    BlendedCandidates around the two-tower); used for retrieval negatives and for the
    candidates re-ranked in evaluation.
    positives: see build_ranking_dataset (default "retrieved": purchases among the
    candidates, so training rows look like what the ranker re-orders).
    pair_scorer: two-tower score of any (customer, article) pair as of a date; adds
    the ``two_tower_score`` feature (left out without it).
    model_params: RankingModel keyword arguments (reference settings by default).
    early_stopping: "holdout" (10% of training customers), "validation" (the
    reference's choice: the validation window itself, slightly optimistic) or "none".
    compare_random_negatives: also fit the reference's random-negative variant and
    report it as ``catboost_random_negatives``. yetirank: also fit CatBoostRanker
    (YetiRank) on the same rows as ``catboost_yetirank``.
    compare_max_rows: skip both comparison models when the training rows outnumber
    this (they are diagnostics; at FULL size they cost several minutes); the report's
    ``comparisons_skipped`` says why. None: fit them at any size.
    negatives_per_customer: thin retrieval negatives of the TRAINING rows to at most
    this many per customer and window (see build_ranking_dataset); validation rows are
    never thinned.
    max_train_customers: a seeded sample of at most this many buyers per training
    window (both negative kinds); None: all.
    max_eval_customers: evaluate on a seeded sample of this many validation buyers
    (all when None); the report's n_customers says how many were used.
    reports_dir: when given, writes ranking.json and the importance PNG there.
    """
    say = progress or (lambda _msg: None)
    if validation_window.start < max(w.end for w in train_windows):
        raise ValueError(
            f"validation window starts {validation_window.start}, before the last training "
            f"window ends ({max(w.end for w in train_windows)}): labels would leak into training"
        )
    params = {"seed": seed, **(model_params or {})}
    started = time.perf_counter()
    tx = transactions.lazy()

    actual = purchases_by_customer(tx, validation_window)
    if max_eval_customers is not None and len(actual) > max_eval_customers:
        buyers = sorted(actual)
        pick = np.random.default_rng(seed).choice(len(buyers), max_eval_customers, replace=False)
        actual = {buyers[i]: actual[buyers[i]] for i in np.sort(pick)}
    eval_customers = sorted(actual)

    def dataset(windows: Sequence[Window], kind: str, training: bool) -> pl.DataFrame:
        return build_ranking_dataset(
            tx, articles, customers, windows, negatives=kind, candidates=candidates,
            pair_scorer=pair_scorer, k=k, per_positive=per_positive,
            positives=positives if kind == "retrieval" else None, seed=seed,
            retrieval_train_end=retrieval_train_end,
            negatives_per_customer=negatives_per_customer if training else None,
            customer_ids=None if training else eval_customers,
            max_customers=max_train_customers if training else None,
        )

    say(f"building {negatives}-negative training rows for {len(train_windows)} window(s)")
    train = dataset(train_windows, negatives, training=True)
    say(f"building validation rows ({validation_window.start} .. {validation_window.end})")
    valid = dataset([validation_window], negatives, training=False)
    say(f"fitting CatBoost on {train.height:,} rows ({int(train[LABEL].sum()):,} positives)")
    main = _fit("classifier", params, train, valid, early_stopping, holdout_share, seed)
    models = {"catboost": main}

    skipped = comparisons_skipped(train.height, compare_max_rows, yetirank, compare_random_negatives
                                  and negatives != "random")
    if skipped is not None:
        say(skipped)
        yetirank = compare_random_negatives = False
    if yetirank:
        say("fitting CatBoostRanker (YetiRank)")
        models["catboost_yetirank"] = _fit(
            "ranker", params, train, valid, early_stopping, holdout_share, seed
        )
    # what the report needs from the big frames, then free them before the next ones
    row_counts = {
        "train": train.height,
        "train_positives": int(train[LABEL].sum()),
        "validation": valid.height,
        "validation_positives": int(valid[LABEL].sum()),
    }
    leaks = null_pattern_leaks(train, feature_columns(train))
    valid_labels = valid[LABEL].to_numpy()
    valid_scores = main.predict(valid)
    del train
    if early_stopping != "validation":
        del valid
    random_rows = None
    if compare_random_negatives and negatives != "random":
        say("fitting the random-negative variant (reference dataset) for comparison")
        random_train = dataset(train_windows, "random", training=True)
        random_rows = random_train.height
        random_valid = (
            dataset([validation_window], "random", training=False)
            if early_stopping == "validation"
            else None
        )
        models["catboost_random_negatives"] = _fit(
            "classifier", params, random_train, random_valid, early_stopping, holdout_share, seed
        )
        del random_train, random_valid

    say(f"re-ranking the candidates of {len(eval_customers):,} validation customers")
    cand_rows = candidate_features(
        tx, articles, customers, eval_customers, validation_window.start, candidates, k, pair_scorer
    )
    metrics = evaluate_reranking(
        models, cand_rows, actual, best_sellers(tx, validation_window.start, 7, K_DEFAULT)
    )
    metrics["catboost"].update(classification_metrics(valid_labels, valid_scores))
    importance = main.feature_importance()
    report = {
        "step": "ranking",
        "split": "validation",
        "seconds": round(time.perf_counter() - started, 3),
        "metrics": metrics,
        "feature_importance": importance,
        "classification_report": classification_report_text(valid_labels, valid_scores),
        "candidate_recall_at_k": candidate_recall(cand_rows, actual),
        # features missing far more often in one class (should be empty; see leakage.py)
        "null_pattern_leaks": leaks,
        "comparisons_skipped": skipped,
        "compare_max_rows": compare_max_rows,
        "negatives": negatives,
        "positives": positives or ("retrieved" if negatives == "retrieval" else "all"),
        "k": k,
        "windows": {
            "train": [[str(w.start), str(w.end)] for w in train_windows],
            "validation": [str(validation_window.start), str(validation_window.end)],
            "retrieval_train_end": None if retrieval_train_end is None else str(retrieval_train_end),
        },
        "rows": {
            **row_counts,
            "candidates": cand_rows.height,
            "train_random_negatives": random_rows,
        },
        "params": main.params(),
        "best_iteration": main.best_iteration,
        "early_stopping": early_stopping,
        "negatives_per_customer": negatives_per_customer,
        "max_eval_customers": max_eval_customers,
        "max_train_customers": max_train_customers,
    }
    if reports_dir is not None:
        plot = plot_feature_importance(importance, Path(reports_dir) / IMPORTANCE_PLOT)
        report["feature_importance_plot"] = str(plot)
        write_report(report, Path(reports_dir))
    say("done" if skipped is None else f"done ({skipped})")
    return RankingResult(
        model=main,
        report=report,
        feature_importance=importance,
        train_rows=row_counts["train"],
        validation_rows=row_counts["validation"],
        variants={n: m for n, m in models.items() if n != "catboost"},
    )


__all__ = [
    "ID_COLUMNS",
    "RankingResult",
    "candidate_features",
    "comparisons_skipped",
    "default_windows",
    "evaluate_reranking",
    "plot_feature_importance",
    "purchases_by_customer",
    "ranked_lists",
    "train_ranking",
    "write_report",
]
