"""`hmrec evaluate`: the test week, every baseline and the 4-stage pipeline side by side,
evaluate.json and the HTML report.

The champion models were trained without the validation and test weeks; the baselines
are fitted on everything before the test week (a little more recent data than the
models saw, which favours the baselines, not us). Every system is asked for the same
customers: those with at least one purchase in the test week.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hmrec.config import Settings
from hmrec.evaluation import EvaluationResult, System, run_evaluation, write_evaluation_report
from hmrec.features import groups
from hmrec.pipelines.train import split_layout
from hmrec.serving.loading import candidate_budget, load_recommender
from hmrec.serving.recommender import FILTER_POLICIES, FourStageRecommender
from hmrec.store import FeatureStore

Progress = Callable[..., None]
BATCH = 5_000


@dataclass
class EvaluateStepResult:
    """Metrics of every system, and where the report is."""

    result: EvaluationResult
    report_path: Path
    seconds: float


def pipeline_system(rec: FourStageRecommender, at, progress: Progress | None = None, name: str = "") -> System:
    """The 4-stage recommender as an evaluation System (final lists + its candidate set)."""

    def recommend(customer_ids, k):
        out = {}
        ids = list(customer_ids)
        for start in range(0, len(ids), BATCH):
            for r in rec.recommend_batch(ids[start:start + BATCH], at, k):
                out[r.customer_id] = r.article_ids
            if progress is not None:
                progress(f"evaluate: {name}", min(start + BATCH, len(ids)), len(ids))
        return out

    return System(recommend=recommend, candidates=lambda ids, k: rec.candidates(list(ids), at, k))


def two_tower_system(rec: FourStageRecommender, at) -> System:
    """Retrieval alone: the two-tower model's nearest articles, no filter, no ranker."""

    def top(customer_ids, k):
        found = rec.retrieval.two_tower(list(customer_ids), at, k)
        return {c: [a for a, _ in found.get(c, [])] for c in customer_ids}

    return System(recommend=top, candidates=top)


def run_evaluate_step(settings: Settings, progress: Progress | None = None) -> EvaluateStepResult:
    """Evaluate on the test week and write reports/evaluate.json and reports/report/index.html."""
    t0 = time.perf_counter()
    fs = FeatureStore(settings.store_dir)
    layout = split_layout(fs, settings)
    at = layout["test_start"]
    transactions = fs.get_feature_group(groups.TRANSACTIONS.name, groups.TRANSACTIONS.version).read(
        ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"])
    rec = load_recommender(settings, fs=fs)
    systems = {"two_tower": two_tower_system(rec, at),
               "pipeline": pipeline_system(rec, at, progress, "pipeline")}
    for policy in FILTER_POLICIES:
        systems[f"pipeline_{policy}"] = pipeline_system(rec.with_policy(policy), at, progress, f"pipeline_{policy}")
    split, result = run_evaluation(
        transactions, rec.customers, rec.articles, reports_dir=settings.reports_dir,
        extra_systems=systems, seed=settings.SEED, test_days=settings.TEST_DAYS,
        candidate_k=candidate_budget(settings))
    report = write_evaluation_report(settings.reports_dir, split, result, rec.articles)
    return EvaluateStepResult(result, report, time.perf_counter() - t0)
