"""`hmrec run`: every step in order, each reading its inputs from the previous step's
store/registry output, ending with one summary."""

from __future__ import annotations

import time

from rich.console import Console

from hmrec.config import Settings
from hmrec.pipelines.data import run_data_step
from hmrec.pipelines.features import run_feature_pipeline
from hmrec.pipelines.progress import step_progress
from hmrec.pipelines.evaluate import run_evaluate_step
from hmrec.pipelines.summary import (evaluation_metrics, features_table, metrics_table, steps_table,
                                     training_table)
from hmrec.serving.loading import candidate_budget
from hmrec.pipelines.train import train_ranking_stage, train_retrieval_stage


def run_all(settings: Settings, console: Console) -> dict[str, float]:
    """Run the whole pipeline; return seconds per step."""
    seconds: dict[str, float] = {}
    console.rule(f"[bold]hmrec run[/] size={settings.CUSTOMER_DATA_SIZE.value} home={settings.HOME_DIR}")

    t0 = time.perf_counter()
    with step_progress(console) as progress:
        data = run_data_step(settings, progress=progress)
    seconds["data"] = time.perf_counter() - t0
    console.print(data.report.to_table())

    t0 = time.perf_counter()
    with step_progress(console) as progress:
        features = run_feature_pipeline(settings, progress=progress)
    seconds["features"] = time.perf_counter() - t0
    console.print(features_table(features))

    t0 = time.perf_counter()
    with step_progress(console) as progress:
        retrieval = train_retrieval_stage(settings, progress=progress)
        ranking = train_ranking_stage(settings, progress=progress)
    seconds["train"] = time.perf_counter() - t0
    console.print(training_table([retrieval, ranking], settings))

    t0 = time.perf_counter()
    with step_progress(console) as progress:
        evaluation = run_evaluate_step(settings, progress=progress)
    seconds["evaluate"] = time.perf_counter() - t0
    console.print(metrics_table(f"Headline: test week {evaluation.result.test_start} .. "
                                f"({evaluation.result.n_customers:,} customers)",
                                evaluation.result.metrics, evaluation_metrics(candidate_budget(settings))))
    console.print(f"report: {evaluation.report_path}")
    console.print(steps_table(seconds))
    return seconds
