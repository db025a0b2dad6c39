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
