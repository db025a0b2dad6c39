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
from hmrec.ranking.config import RankingConfig
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


def write_report(report: dict, reports_dir: Path) -> Path:
    """Write <reports_dir>/ranking.json atomically."""
    return write_json(Path(reports_dir) / REPORT_FILE, report)


def comparisons_skipped(
    train_rows: int, max_rows: int | None, yetirank: bool, random_negatives: bool
) -> str | None:
    """Why the comparison models are not fitted (None: they are, or none was asked for)."""
    asked = [name for name, on in (("YetiRank", yetirank), ("random negatives", random_negatives)) if on]
    if not asked or max_rows is None or train_rows <= max_rows:
        return None
    return (f"comparison models ({', '.join(asked)}) skipped: {train_rows:,} training rows > "
            f"RANKING_COMPARE_MAX_ROWS {max_rows:,}")


# ---------------------------------------------------------------------------------------
# train_ranking = rows -> fit -> evaluate -> report
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """Builds ranking rows of some windows from the same inputs (training or validation rows)."""

    transactions: pl.LazyFrame
    articles: pl.DataFrame
    customers: pl.DataFrame | None
    candidates: CandidateFn
    pair_scorer: PairScorer | None
    retrieval_train_end: date | None
    config: RankingConfig
    eval_customers: list[str]

    def build(self, windows: Sequence[Window], negatives: str, training: bool) -> pl.DataFrame:
        """Training rows (thinned, customers sampled) or the validation buyers' rows."""
        cfg = self.config
        return build_ranking_dataset(
            self.transactions, self.articles, self.customers, windows, negatives=negatives,
            candidates=self.candidates, pair_scorer=self.pair_scorer, k=cfg.k, per_positive=cfg.per_positive,
            positives=cfg.positives if negatives == "retrieval" else None, seed=cfg.seed,
            retrieval_train_end=self.retrieval_train_end,
            negatives_per_customer=cfg.negatives_per_customer if training else None,
            customer_ids=None if training else self.eval_customers,
            max_customers=cfg.max_train_customers if training else None,
        )


@dataclass
class _Fitted:
    """What fitting leaves for evaluation and the report (the big row frames are freed)."""

    models: dict[str, RankingModel]
    row_counts: dict[str, int | None]
    leaks: dict
    valid_labels: np.ndarray
    valid_scores: np.ndarray
    skipped: str | None


def _fit(kind: str, config: RankingConfig, train: pl.DataFrame, valid: pl.DataFrame | None) -> RankingModel:
    """One model on `train`, early-stopped as the config says."""
    features = feature_columns(train)
    if config.early_stopping == "holdout":
        fit_rows, stop_rows = _holdout_split(train, config.holdout_share, config.seed)
    elif config.early_stopping == "validation":
        fit_rows, stop_rows = train, valid
    else:
        fit_rows, stop_rows = train, None
    if kind == "ranker":
        fit_rows = fit_rows.sort("as_of", "customer_id", maintain_order=True)
        if stop_rows is not None:
            stop_rows = stop_rows.sort("as_of", "customer_id", maintain_order=True)
    return RankingModel(kind=kind, **config.model_params).fit(fit_rows, features, valid=stop_rows)


def fit_models(rows: _Rows, train_windows: Sequence[Window], validation_window: Window,
               say: Progress) -> _Fitted:
    """The served classifier, then the comparison models the config asks for (YetiRank on
    the same rows, the reference's random-negative variant on its own rows) unless the
    training rows exceed the comparison cap. Each row frame is freed as soon as it is used."""
    cfg = rows.config
    say(f"building {cfg.negatives}-negative training rows for {len(train_windows)} window(s)")
    train = rows.build(train_windows, cfg.negatives, training=True)
    say(f"building validation rows ({validation_window.start} .. {validation_window.end})")
    valid = rows.build([validation_window], cfg.negatives, training=False)
    say(f"fitting CatBoost on {train.height:,} rows ({int(train[LABEL].sum()):,} positives)")
    main = _fit("classifier", cfg, train, valid)
    models = {"catboost": main}
    skipped = comparisons_skipped(train.height, cfg.compare_max_rows, cfg.yetirank, cfg.fits_random_variant)
    if skipped is not None:
        say(skipped)
    if cfg.yetirank and skipped is None:
        say("fitting CatBoostRanker (YetiRank)")
        models["catboost_yetirank"] = _fit("ranker", cfg, train, valid)
    fitted = _Fitted(
        models=models,
        row_counts={"train": train.height, "train_positives": int(train[LABEL].sum()),
                    "validation": valid.height, "validation_positives": int(valid[LABEL].sum()),
                    "train_random_negatives": None},
        leaks=null_pattern_leaks(train, feature_columns(train)),
        valid_labels=valid[LABEL].to_numpy(),
        valid_scores=main.predict(valid),
        skipped=skipped,
    )
    del train, valid
    if cfg.fits_random_variant and skipped is None:
        say("fitting the random-negative variant (reference dataset) for comparison")
        random_train = rows.build(train_windows, "random", training=True)
        fitted.row_counts["train_random_negatives"] = random_train.height
        random_valid = (rows.build([validation_window], "random", training=False)
                        if cfg.early_stopping == "validation" else None)
        models["catboost_random_negatives"] = _fit("classifier", cfg, random_train, random_valid)
    return fitted


def evaluate_models(rows: _Rows, fitted: _Fitted, actual: dict[str, set[str]],
                    validation_window: Window) -> tuple[dict[str, dict[str, float]], pl.DataFrame]:
    """(metrics per system, the candidate rows) on the validation buyers' re-ranked candidates;
    the served model also gets its classification metrics on the validation rows."""
    cand_rows = candidate_features(rows.transactions, rows.articles, rows.customers, rows.eval_customers,
                                   validation_window.start, rows.candidates, rows.config.k, rows.pair_scorer)
    popular = best_sellers(rows.transactions, validation_window.start, 7, K_DEFAULT)
    metrics = evaluate_reranking(fitted.models, cand_rows, actual, popular)
    metrics["catboost"].update(classification_metrics(fitted.valid_labels, fitted.valid_scores))
    return metrics, cand_rows


def ranking_report(config: RankingConfig, fitted: _Fitted, metrics: dict[str, dict[str, float]],
                   cand_rows: pl.DataFrame, actual: dict[str, set[str]], train_windows: Sequence[Window],
                   validation_window: Window, retrieval_train_end: date | None, seconds: float) -> dict:
    """The ranking.json document (docs/metrics.md)."""
    main = fitted.models["catboost"]
    rows = {k: v for k, v in fitted.row_counts.items() if k != "train_random_negatives"}
    return {
        "step": "ranking",
        "split": "validation",
        "seconds": round(seconds, 3),
        "metrics": metrics,
        "feature_importance": main.feature_importance(),
        "classification_report": classification_report_text(fitted.valid_labels, fitted.valid_scores),
        "candidate_recall_at_k": candidate_recall(cand_rows, actual),
        # features missing far more often in one class (should be empty; see leakage.py)
        "null_pattern_leaks": fitted.leaks,
        "comparisons_skipped": fitted.skipped,
        "compare_max_rows": config.compare_max_rows,
        "negatives": config.negatives,
        "positives": config.positives or ("retrieved" if config.negatives == "retrieval" else "all"),
        "k": config.k,
        "windows": {
            "train": [[str(w.start), str(w.end)] for w in train_windows],
            "validation": [str(validation_window.start), str(validation_window.end)],
            "retrieval_train_end": None if retrieval_train_end is None else str(retrieval_train_end),
        },
        "rows": {
            **rows,
            "candidates": cand_rows.height,
            "train_random_negatives": fitted.row_counts["train_random_negatives"],
        },
        "params": main.params(),
        "best_iteration": main.best_iteration,
        "early_stopping": config.early_stopping,
        "negatives_per_customer": config.negatives_per_customer,
        "max_eval_customers": config.max_eval_customers,
        "max_train_customers": config.max_train_customers,
    }


def validation_buyers(transactions: pl.LazyFrame, window: Window, config: RankingConfig) -> dict[str, set[str]]:
    """Relevant sets of the validation window's buyers, a seeded sample of
    `max_eval_customers` of them when there are more."""
    actual = purchases_by_customer(transactions, window)
    if config.max_eval_customers is not None and len(actual) > config.max_eval_customers:
        buyers = sorted(actual)
        pick = np.random.default_rng(config.seed).choice(len(buyers), config.max_eval_customers, replace=False)
        actual = {buyers[i]: actual[buyers[i]] for i in np.sort(pick)}
    return actual


def train_ranking(
    transactions: pl.DataFrame | pl.LazyFrame,
    articles: pl.DataFrame,
    customers: pl.DataFrame | None,
    train_windows: Sequence[Window],
    validation_window: Window,
    candidates: CandidateFn,
    pair_scorer: PairScorer | None = None,
    config: RankingConfig | None = None,
    retrieval_train_end: date | None = None,
    reports_dir: Path | None = None,
    progress: Progress | None = None,
) -> RankingResult:
    """Build the datasets, fit CatBoost, evaluate on the validation window, write the report.

    candidates: the retrieval stage, ``candidates(customer_ids, as_of, k)`` (e.g.
    BlendedCandidates around the two-tower); used for retrieval negatives and for the
    candidates re-ranked in evaluation. pair_scorer: two-tower score of any (customer,
    article) pair as of a date; adds the ``two_tower_score`` feature (left out without it).
    config: what to fit and how (RankingConfig; default: the Settings defaults).
    retrieval_train_end: where the retrieval model's training data ends (checked: no
    ranking window may start before it). reports_dir: when given, ranking.json is written there.
    """
    cfg = config or RankingConfig()
    say = progress or (lambda _msg: None)
    if validation_window.start < max(w.end for w in train_windows):
        raise ValueError(
            f"validation window starts {validation_window.start}, before the last training "
            f"window ends ({max(w.end for w in train_windows)}): labels would leak into training"
        )
    started = time.perf_counter()
    tx = transactions.lazy()
    actual = validation_buyers(tx, validation_window, cfg)
    rows = _Rows(tx, articles, customers, candidates, pair_scorer, retrieval_train_end, cfg, sorted(actual))
    fitted = fit_models(rows, train_windows, validation_window, say)
    say(f"re-ranking the candidates of {len(actual):,} validation customers")
    metrics, cand_rows = evaluate_models(rows, fitted, actual, validation_window)
    report = ranking_report(cfg, fitted, metrics, cand_rows, actual, train_windows, validation_window,
                            retrieval_train_end, time.perf_counter() - started)
    if reports_dir is not None:
        write_report(report, Path(reports_dir))
    say("done" if fitted.skipped is None else f"done ({fitted.skipped})")
    main = fitted.models["catboost"]
    return RankingResult(
        model=main,
        report=report,
        feature_importance=report["feature_importance"],
        train_rows=fitted.row_counts["train"],
        validation_rows=fitted.row_counts["validation"],
        variants={n: m for n, m in fitted.models.items() if n != "catboost"},
    )


__all__ = [
    "ID_COLUMNS",
    "RankingConfig",
    "RankingResult",
    "candidate_features",
    "comparisons_skipped",
    "default_windows",
    "evaluate_reranking",
    "purchases_by_customer",
    "ranked_lists",
    "train_ranking",
    "write_report",
]
