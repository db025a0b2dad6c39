"""The end-of-step tables say what a user needs to know, whichever command ran the step."""

from __future__ import annotations

from rich.console import Console

from hmrec.config import Settings
from hmrec.pipelines.summary import training_table
from hmrec.pipelines.train import StageResult


def _render(renderable) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_training_table_says_why_comparison_models_were_skipped(tmp_path):
    settings = Settings(HOME_DIR=tmp_path)
    skipped = StageResult(
        "ranking", {"catboost": {"map_at_12": 0.07}}, seconds={"train": 1.0},
        extra={"comparisons_skipped": "comparison models (YetiRank) skipped: 3,408,711 training rows > 1,000,000"},
    )
    plain = StageResult("retrieval", {"two_tower": {"top_100_accuracy": 0.3}}, seconds={"train": 2.0})
    text = _render(training_table([plain, skipped], settings))
    assert "ranking: comparison models (YetiRank) skipped: 3,408,711 training rows > 1,000,000" in text
    assert "0.0700" in text and "0.3000" in text
    assert text.count("skipped") == 1  # nothing said for the stage that skipped nothing


def _evaluation(differences):
    from hmrec.evaluation import EvaluationResult

    systems = ("popularity", "popularity_by_age", "repurchase_popularity", "als", "two_tower", "pipeline",
               "pipeline_none", "pipeline_exclude_purchased", "pipeline_exclude_purchased_except_repurchase")
    metrics = {s: {"map_at_12": 0.0213 + i / 1000, "recall_at_12": 0.0456, "ndcg_at_12": 0.0312,
                   "recall_at_150": 0.2345, "reachable_share": 0.2211} for i, s in enumerate(systems)}
    intervals = {s: {m: [v - 0.0011, v + 0.0013] for m, v in values.items() if m != "reachable_share"}
                 for s, values in metrics.items()}
    return EvaluationResult(metrics=metrics, seconds=1.0, n_customers=76_543, intervals=intervals,
                            differences=differences)


def test_evaluation_table_fits_80_columns_with_customer_count_and_intervals():
    from hmrec.pipelines.summary import evaluation_summary

    result = _evaluation({})
    console = Console(record=True, width=80)
    console.print(evaluation_summary(result, 150, "Headline: test week 2020-09-16 .."))
    text = console.export_text()
    assert "…" not in text  # nothing cut
    assert "76,543 customers" in text
    lines = text.splitlines()
    # every system on its own row, each value with its interval on the line beneath
    for short in ("popular", "pop_by_age", "repurch+pop", "als", "two_tower", "pipeline", "pipe:excl-r"):
        assert any(line.startswith(short + " ") for line in lines), short
    assert text.count(".0202-.0226") == 1  # popularity's MAP@12 interval
    assert text.count(".2334-.2358") == len(result.metrics)  # every candidate recall's
    assert "repurch+pop=repurchase_popularity" in text
    assert max(len(line) for line in lines) <= 80


def test_evaluation_verdict_says_not_distinguishable_when_the_interval_includes_zero():
    from hmrec.pipelines.summary import evaluation_summary, evaluation_verdict

    differences = {
        "popularity": {"map_at_12": {"diff": 0.012, "ci95": [0.004, 0.020]}},
        "repurchase_popularity": {"map_at_12": {"diff": 0.003, "ci95": [-0.002, 0.008]}},
        "pipeline_none": {"map_at_12": {"diff": 0.05, "ci95": [0.04, 0.06]}},  # a variant, not a baseline
    }
    result = _evaluation(differences)
    line = evaluation_verdict(result)
    assert line.startswith("MAP@12 (76,543 customers): pipeline beats popularity;")
    assert "not distinguishable from repurchase_popularity at this sample size" in line
    assert "beats popularity and" not in line and "pipeline_none" not in line
    console = Console(record=True, width=80)
    console.print(evaluation_summary(result, 150))
    assert "not distinguishable from" in console.export_text()
