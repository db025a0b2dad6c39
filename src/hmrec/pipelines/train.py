"""`hmrec train`: two-tower retrieval, candidate index, CatBoost ranking, registration.

Each stage reads its inputs from the feature store and the model registry, never from
the other stage's memory, so `hmrec train retrieval` and `hmrec train ranking` also
run alone.

Time layout (docs/architecture.md)::

    ... retrieval training ... | ranking weeks | validation week | test week |
                               ^ retrieval_train_end

The two-tower model trains on the retrieval view's training split up to
RANKING_TRAIN_WEEKS weeks before validation; those weeks build the ranker's rows, so the two-tower
score the ranker learns from is out-of-sample there, as it is at serving time. Both
models are validated on the validation week; the test week is left to `hmrec evaluate`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

from hmrec.config import Settings
from hmrec.evaluation.report import plot_feature_importance
from hmrec.features import groups
from hmrec.features.views import RETRIEVAL_VIEW
from hmrec.ranking import (
    RankingConfig,
    candidate_features,
    default_windows,
    load_inputs,
    ranking_feature_view,
    train_ranking,
)
from hmrec.registry import (
    CandidatePyfunc,
    ModelRegistry,
    QueryPyfunc,
    RankingPyfunc,
    fingerprint,
)
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.index import CandidateIndex
from hmrec.retrieval.trainer import EpochStats, train
from hmrec.serving.loading import load_retrieval_stage
from hmrec.store import FeatureStore
from hmrec.store.atomic import write_json

Progress = Callable[..., None]
#: Feature group holding every article's candidate embedding (versioned with the rest).
CANDIDATE_EMBEDDINGS = "candidate_embeddings"
#: The validation metric that decides the champion alias of each model.
RETRIEVAL_METRIC = "top_100_accuracy"
RANKING_METRIC = "map_at_12"
#: The ranker's feature importance chart, beside ranking.json.
RANKING_IMPORTANCE_PNG = "ranking_feature_importance.png"


@dataclass
class StageResult:
    """What a training stage produced: metrics (system -> metric -> value), versions, times."""

    name: str
    metrics: dict[str, dict[str, float]]
    registered: list[Any] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def write_report(settings: Settings, step: str, payload: dict) -> Path:
    """<home>/reports/<step>.json, written atomically (docs/metrics.md)."""
    return write_json(settings.reports_dir / f"{step}.json", payload)


def split_layout(fs: FeatureStore, settings: Settings) -> dict[str, dt.date]:
    """The dates every stage agrees on: validation/test windows and the ranking week."""
    fv = fs.get_feature_view(RETRIEVAL_VIEW)
    bounds = fv.split_bounds(test_days=settings.TEST_DAYS, validation_days=settings.VALIDATION_DAYS)
    _, _, retrieval_train_end = default_windows(bounds.validation_start, n_train_weeks=settings.RANKING_TRAIN_WEEKS,
                                                days=settings.VALIDATION_DAYS)
    return {"retrieval_train_end": retrieval_train_end, "validation_start": bounds.validation_start,
            "test_start": bounds.test_start, "test_end": bounds.test_end}


def train_retrieval_stage(settings: Settings, progress: Progress | None = None, force: bool = False) -> StageResult:
    """Train the two-tower model, build and store the candidate index, register both towers."""
    t0 = time.perf_counter()
    fs = FeatureStore(settings.store_dir)
    fv = fs.get_feature_view(RETRIEVAL_VIEW)
    layout = split_layout(fs, settings)
    train_df, val_df, _ = fv.train_validation_test_split(
        test_days=settings.TEST_DAYS, validation_days=settings.VALIDATION_DAYS)
    config = TwoTowerConfig.from_settings(settings)
    # only the columns the towers read, then the time cut: at full size the view's other
    # string columns and a filtered copy of all of them cost gigabytes for nothing
    keep = ["customer_id", "article_id", "t_dat", *(f.column for f in config.query_features)]
    keep = [c for c in dict.fromkeys(keep) if c in train_df.columns]
    train_df = train_df.select(keep).filter(pl.col("t_dat") < layout["retrieval_train_end"])
    articles = fs.get_feature_group(groups.ARTICLES.name, groups.ARTICLES.version).read()
    seconds = {"read": time.perf_counter() - t0}

    shown = {"epoch": 1, "summary": ""}

    def on_batch(done: int, total: int) -> None:
        if progress is not None and (done % 16 == 0 or done == total):
            progress(f"retrieval: epoch {shown['epoch']}/{config.num_epochs} rows{shown['summary']}",
                     done * config.batch_size, total * config.batch_size)

    def on_epoch(stats: EpochStats) -> None:
        # the retrieval loss first: the L2 term (the same for train and val) dwarfs it at full size
        shown["epoch"] = stats.epoch + 1
        shown["summary"] = (f"; epoch {stats.epoch} loss {stats.train_retrieval_loss:.3f} "
                            f"val {stats.val_retrieval_loss:.3f} (+ L2 {stats.train_regularization_loss:.1f}) "
                            f"{stats.samples_per_second:,.0f} samples/s")

    t1 = time.perf_counter()
    result = train(train_df, val_df, articles, config, on_epoch=on_epoch, on_batch=on_batch)
    seconds["train"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    index = CandidateIndex.build(result.model, articles)
    emb = fs.get_or_create_feature_group(
        CANDIDATE_EMBEDDINGS, version=1, primary_key=["article_id"],
        description="Item-tower embedding of every article (the FAISS index is built from it).",
        features={"article_id": "10-digit article id", "embedding": "candidate embedding"},
    )
    emb.overwrite(index.to_frame())
    model_dir = result.model.save(settings.artifacts_dir / "two_tower")
    seconds["index"] = time.perf_counter() - t2

    history = [stats.__dict__ for stats in result.history]
    val_metrics = result.metrics
    report = {
        "step": "retrieval", "split": "validation", "seconds": round(time.perf_counter() - t0, 3),
        "metrics": val_metrics, "best_epoch": result.best_epoch, "history": history,
        "checkpoints": result.checkpoints,
        "layout": {k: v.isoformat() for k, v in layout.items()},
        "rows": {"train": train_df.height, "validation": val_df.height, "articles": articles.height},
        "config": {k: str(v) for k, v in config.__dict__.items()},
    }
    write_report(settings, "retrieval", report)

    t3 = time.perf_counter()
    registry = ModelRegistry.from_settings(settings)
    data_fp = fingerprint(train_df)
    params = {"embedding_dim": config.embedding_dim, "batch_size": config.batch_size,
              "num_epochs": config.num_epochs, "learning_rate": config.learning_rate,
              "weight_decay": config.weight_decay, "logq_correction": config.logq_correction,
              "remove_accidental_hits": config.remove_accidental_hits, "seed": config.seed,
              "best_epoch": result.best_epoch}
    flat = {k: float(v) for k, v in val_metrics.get("two_tower", {}).items()}
    view = fv.metadata
    registered = []
    with registry.start_run(run_name="retrieval", tags={"step": "retrieval"}):
        import mlflow

        for stats in result.history:
            mlflow.log_metrics({"train_total_loss": stats.train_total_loss,
                                "val_total_loss": stats.val_total_loss,
                                "train_retrieval_loss": stats.train_retrieval_loss,
                                "val_retrieval_loss": stats.val_retrieval_loss,
                                "samples_per_second": stats.samples_per_second}, step=stats.epoch)
        for name, wrapper, example in (
            ("query_model", QueryPyfunc(result.model), train_df.head(5)),
            ("candidate_model", CandidatePyfunc(result.model), articles.head(5)),
        ):
            registered.append(registry.register(
                name, wrapper, example, params, flat, view, data_fp, RETRIEVAL_METRIC, force=force))
    seconds["register"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    return StageResult("retrieval", val_metrics, registered, seconds,
                       {"best_epoch": result.best_epoch, "model_dir": str(model_dir),
                        "history": history, "train_rows": train_df.height})


def monthly_fingerprint(rows: pl.LazyFrame, end: dt.date) -> str:
    """Fingerprint of the rows before `end`, read one calendar month at a time: the
    fingerprint of the (month, fingerprint of its rows) table. As content-bound as one
    fingerprint of all rows (any changed, added or removed row changes its month's), but
    it never holds more than a month: collecting the ranker's 32M FULL transaction rows
    at once cost ~3 GB at the end of the step."""
    rows = rows.filter(pl.col("t_dat") < end)
    bounds = rows.select(pl.col("t_dat").min().alias("lo"), pl.col("t_dat").max().alias("hi")).collect().row(0)
    months: list[dt.date] = []
    fps: list[str] = []
    if bounds[0] is not None:
        month = bounds[0].replace(day=1)
        while month <= bounds[1]:
            following = (month + dt.timedelta(days=32)).replace(day=1)
            chunk = rows.filter((pl.col("t_dat") >= month) & (pl.col("t_dat") < following)).collect()
            if chunk.height:
                months.append(month)
                fps.append(fingerprint(chunk))
            month = following
    return fingerprint(pl.DataFrame({"month": months, "fingerprint": fps},
                                    schema={"month": pl.Date, "fingerprint": pl.String}))


def train_ranking_stage(settings: Settings, progress: Progress | None = None, force: bool = False) -> StageResult:
    """Build the leak-free ranking dataset from the champion retrieval model, fit CatBoost,
    evaluate re-ranking on the validation week, register the ranking model."""
    t0 = time.perf_counter()
    fs = FeatureStore(settings.store_dir)
    registry = ModelRegistry.from_settings(settings)
    layout = split_layout(fs, settings)
    stage = load_retrieval_stage(settings, fs, registry)
    inputs = load_inputs(fs)
    view = ranking_feature_view(fs)
    train_windows, validation_window, retrieval_train_end = default_windows(
        layout["validation_start"], n_train_weeks=settings.RANKING_TRAIN_WEEKS, days=settings.VALIDATION_DAYS)
    seconds = {"read": time.perf_counter() - t0}
    steps = iter(range(1, 100))

    def say(message: str) -> None:
        if progress is not None:
            progress(f"ranking: {message}", next(steps), 7)

    t1 = time.perf_counter()
    result = train_ranking(
        inputs.transactions, inputs.articles, inputs.customers, train_windows, validation_window,
        candidates=stage, pair_scorer=stage.score_pairs, config=RankingConfig.from_settings(settings),
        retrieval_train_end=retrieval_train_end, reports_dir=settings.reports_dir, progress=say,
    )
    plot_feature_importance(result.feature_importance, settings.reports_dir / RANKING_IMPORTANCE_PNG)
    seconds["train"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    catboost_metrics = {k: float(v) for k, v in result.report["metrics"]["catboost"].items()
                        if isinstance(v, (int, float))}
    data_fp = monthly_fingerprint(inputs.transactions.select("customer_id", "article_id", "t_dat"),
                                  validation_window.start)
    some_customers = inputs.customers["customer_id"].head(3).to_list()
    example = candidate_features(inputs.transactions, inputs.articles, inputs.customers, some_customers,
                                 validation_window.start, stage, 2, stage.score_pairs).head(5)
    with registry.start_run(run_name="ranking", tags={"step": "ranking"}):
        reg = registry.register(
            "ranking_model", RankingPyfunc(result.model), example, result.model.params(),
            catboost_metrics, view.metadata, data_fp, RANKING_METRIC,
            force=force)
    seconds["register"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    return StageResult("ranking", result.report["metrics"], [reg], seconds,
                       {"feature_importance": result.feature_importance,
                        "train_rows": result.train_rows, "validation_rows": result.validation_rows,
                        "comparisons_skipped": result.report.get("comparisons_skipped")})
