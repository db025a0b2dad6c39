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
from hmrec.evaluation import (EvaluationResult, System, run_evaluation, write_evaluation,
                              write_evaluation_report)
from hmrec.pipelines.train import split_layout
from hmrec.serving.loading import candidate_budget, load_recommender
from hmrec.serving.recommender import FILTER_POLICIES, FourStageRecommender
from hmrec.store import FeatureStore

Progress = Callable[..., None]


@dataclass
class EvaluateStepResult:
    """Metrics of every system, and where the report is."""

    result: EvaluationResult
    report_path: Path
    seconds: float


def pipeline_system(rec: FourStageRecommender, at) -> System:
    """The 4-stage recommender as an evaluation System (final lists + its candidate set)."""

    def recommend(customer_ids, k):
        return {r.customer_id: r.article_ids for r in rec.recommend_batch(list(customer_ids), at, k)}

    return System(recommend=recommend, candidates=lambda ids, k: rec.candidates(list(ids), at, k))


def two_tower_system(rec: FourStageRecommender, at) -> System:
    """Retrieval alone: the two-tower model's nearest articles, no filter, no ranker
    (one search per batch: the top-k lists are the head of the candidate lists)."""
    last: dict = {}

    def top(customer_ids, k):
        ids = tuple(customer_ids)
        if last.get("ids") != ids or last["k"] < k:
            last.update(ids=ids, k=k, found=rec.retrieval.two_tower(list(ids), at, k))
        found = last["found"]
        return {c: [a for a, _ in found.get(c, [])[:k]] for c in customer_ids}

    return System(recommend=top, candidates=top)


def run_evaluate_step(settings: Settings, progress: Progress | None = None) -> EvaluateStepResult:
    """Evaluate on the test week and write reports/evaluate.json and reports/report/index.html."""
    t0 = time.perf_counter()
    fs = FeatureStore(settings.store_dir)
    layout = split_layout(fs, settings)
    at = layout["test_start"]
    # the policy variants share each batch's retrieval and per-pair ranking features
    # (FourStageRecommender.with_policy), so only their filters and list features differ
    rec = load_recommender(settings, fs=fs)
    systems = {"two_tower": two_tower_system(rec, at)}
    for policy in FILTER_POLICIES:
        systems[f"pipeline_{policy}"] = pipeline_system(rec.with_policy(policy), at)
    # the recommender's purchase history is the transactions group (t_dat, customer_id,
    # article_id: all the baselines read), so it is not read a second time (FULL: ~3 GB)
    split, result = run_evaluation(
        rec.history, rec.customers, rec.articles, reports_dir=None,
        extra_systems=systems, seed=settings.SEED, test_days=settings.TEST_DAYS,
        candidate_k=candidate_budget(settings), batch_size=settings.EVAL_BATCH_SIZE, progress=progress)
    # `pipeline` is the default policy's variant: scored once, reported under both names
    alias_system(result, "pipeline", f"pipeline_{rec.filter_policy}", before="pipeline_")
    write_evaluation(result, settings.reports_dir)
    report = write_evaluation_report(settings.reports_dir, split, result, rec.articles)
    return EvaluateStepResult(result, report, time.perf_counter() - t0)


def alias_system(result: EvaluationResult, name: str, source: str, before: str = "") -> None:
    """Report `source`'s figures under `name` too (placed before the first system whose name
    starts with `before`), instead of computing the same lists twice."""

    def insert(d: dict) -> dict:
        if source not in d:
            return d
        items = [(k, v) for k, v in d.items() if k != name]
        at = next((i for i, (k, _) in enumerate(items) if before and k.startswith(before)), len(items))
        value = d[source]
        items.insert(at, (name, dict(value) if isinstance(value, dict) else value))
        return dict(items)

    result.metrics = insert(result.metrics)
    result.recall_curves = insert(result.recall_curves)
    result.examples = insert(result.examples)  # (system_seconds: only what was computed)
    result.intervals = insert(result.intervals)
    result.per_customer = insert(result.per_customer)
    if name == result.reference:  # its paired differences, now that it is there (none to its source)
        result.compare(skip=(source,))
