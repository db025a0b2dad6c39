"""Offline evaluation: the test-week split, baselines, the harness that scores every
system side by side (evaluate.json, with bootstrap intervals and paired differences),
and the HTML report with charts."""

from hmrec.evaluation.baselines import (
    BASELINES,
    ALSBaseline,
    PopularityBaseline,
    PopularityByAgeBaseline,
    Recommender,
    RepurchasePopularityBaseline,
    popularity_ranking,
)
from hmrec.evaluation.evaluate import (
    REPORT_FILE,
    EvaluationResult,
    RecommendFn,
    System,
    as_system,
    evaluate_systems,
    fit_baselines,
    pick_examples,
    run_evaluation,
    write_evaluation,
)
from hmrec.evaluation.intervals import (
    bootstrap_interval,
    paired_difference,
    summary_line,
)
from hmrec.evaluation.report import (
    REPORT_DIR,
    CustomerExample,
    build_examples,
    read_report_inputs,
    write_evaluation_report,
    write_report,
)
from hmrec.evaluation.split import (
    EvaluationInputError,
    EvaluationSplit,
    split_test_week,
)
from hmrec.retrieval.list_metrics import recall_at_k

__all__ = [
    "BASELINES",
    "REPORT_DIR",
    "REPORT_FILE",
    "ALSBaseline",
    "CustomerExample",
    "EvaluationInputError",
    "EvaluationResult",
    "EvaluationSplit",
    "PopularityBaseline",
    "PopularityByAgeBaseline",
    "RecommendFn",
    "Recommender",
    "RepurchasePopularityBaseline",
    "System",
    "as_system",
    "bootstrap_interval",
    "build_examples",
    "evaluate_systems",
    "fit_baselines",
    "paired_difference",
    "pick_examples",
    "popularity_ranking",
    "read_report_inputs",
    "recall_at_k",
    "run_evaluation",
    "split_test_week",
    "summary_line",
    "write_evaluation",
    "write_evaluation_report",
    "write_report",
]
