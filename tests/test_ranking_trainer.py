"""End to end on a small planted world: the ranker must beat ordering by a weak score."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from ranking_planted import planted_world

from hmrec.config import Settings
from hmrec.ranking.config import RankingConfig
from hmrec.ranking.trainer import default_windows, ranked_lists, train_ranking

SYSTEMS = {"catboost", "catboost_random_negatives", "catboost_yetirank", "two_tower", "popularity", "popularity_candidates"}


@pytest.fixture(scope="module")
def world() -> dict:
    return planted_world(n_customers=300, n_articles=150, n_days=63, seed=0)


#: A small world: 50 candidates, one thread, no samples or caps, no YetiRank unless asked.
SMALL = {"k": 50, "thread_count": 1, "yetirank": False, "compare_max_rows": None,
         "max_train_customers": None, "max_eval_customers": None}


def _train(world: dict, reports_dir=None, **kw):
    train_w, valid_w, retrieval_end = default_windows(world["end"] - timedelta(days=7), n_train_weeks=2)
    return train_ranking(
        world["transactions"], world["articles"], world["customers"], train_w, valid_w,
        world["candidates"], world["pair_scorer"], RankingConfig(**{**SMALL, **kw}),
        retrieval_train_end=retrieval_end, reports_dir=reports_dir,
    )


@pytest.fixture(scope="module")
def result(world: dict, tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    return _train(world, reports_dir=reports, yetirank=True), reports


def test_ranker_beats_the_weak_score_it_was_given(result) -> None:
    res, _ = result
    m = res.report["metrics"]
    assert m["catboost"]["n_customers"] == m["two_tower"]["n_customers"] > 100
    assert m["catboost"]["map_at_12"] > 2 * m["two_tower"]["map_at_12"]
    assert m["catboost"]["ndcg_at_12"] > 2 * m["two_tower"]["ndcg_at_12"]
    assert m["catboost_yetirank"]["map_at_12"] > m["two_tower"]["map_at_12"]
    assert m["catboost"]["roc_auc"] > 0.7


def test_report_shape_follows_design(result) -> None:
    res, reports = result
    r = res.report
    assert r["step"] == "ranking" and r["split"] == "validation" and r["seconds"] > 0
    assert set(r["metrics"]) == SYSTEMS
    assert set(r["metrics"]["catboost"]) >= {"precision", "recall", "f1", "roc_auc", "map_at_12", "ndcg_at_12"}
    on_disk = json.loads((reports / "ranking.json").read_text())
    assert on_disk["metrics"] == r["metrics"]
    assert on_disk["feature_importance"] == r["feature_importance"]
    assert not list(reports.glob("*.png"))  # the ranking package does not plot (the report does)
    assert r["rows"]["train_positives"] > 0 and r["rows"]["train"] > r["rows"]["train_positives"]
    assert "precision" in r["classification_report"]


def test_importance_is_a_distribution_with_no_constructed_winner(result) -> None:
    res, _ = result
    imp = res.feature_importance
    assert sum(imp.values()) == pytest.approx(1.0)
    assert list(imp.values()) == sorted(imp.values(), reverse=True)
    assert max(imp.values()) < 0.6
    assert imp["month_sin"] + imp["month_cos"] < 0.05  # one month in every window: nothing to learn
    assert res.report["null_pattern_leaks"] == {}


def test_same_seed_same_metrics(world: dict, result) -> None:
    res, _ = result
    again = _train(world, compare_random_negatives=False)
    assert again.report["metrics"]["catboost"] == res.report["metrics"]["catboost"]
    assert again.feature_importance == res.feature_importance


def test_windows_must_not_overlap_retrieval_or_validation(world: dict) -> None:
    train_w, valid_w, retrieval_end = default_windows(world["end"] - timedelta(days=7), n_train_weeks=1)
    with pytest.raises(ValueError, match="in-sample"):
        train_ranking(
            world["transactions"], world["articles"], world["customers"], train_w, valid_w,
            world["candidates"], retrieval_train_end=retrieval_end + timedelta(days=3),
        )
    with pytest.raises(ValueError, match="leak"):
        train_ranking(
            world["transactions"], world["articles"], world["customers"], [valid_w], train_w[0],
            world["candidates"],
        )


def test_ranked_lists_breaks_ties_by_the_tie_column() -> None:
    import polars as pl

    df = pl.DataFrame(
        {"customer_id": ["c", "c", "c", "d"], "article_id": ["a", "b", "z", "a"],
         "s": [1.0, 2.0, 1.0, 0.0], "r": [3, 2, 1, 1]}
    )
    assert ranked_lists(df, "s", k=2, tie_break="r") == {"c": ["b", "z"], "d": ["a"]}


def test_evaluation_sample_and_thinned_training_rows(world: dict) -> None:
    res = _train(world, compare_random_negatives=False, max_eval_customers=50, negatives_per_customer=8)
    m = res.report["metrics"]
    assert all(m[s]["n_customers"] == 50 for s in ("catboost", "two_tower", "popularity", "popularity_candidates"))
    rows = res.report["rows"]
    n_train_customers_upper = rows["train_positives"]  # every kept customer has >= 1 positive
    assert rows["train"] - rows["train_positives"] <= 8 * n_train_customers_upper
    assert res.report["max_eval_customers"] == 50


def test_comparison_models_are_skipped_above_the_row_cap_and_the_report_says_why(world: dict, result) -> None:
    full, _ = result
    capped = _train(world, yetirank=True, compare_max_rows=100)
    r = capped.report
    assert set(r["metrics"]) == SYSTEMS - {"catboost_yetirank", "catboost_random_negatives"}
    assert "YetiRank, random negatives" in r["comparisons_skipped"]
    assert f"{r['rows']['train']:,} training rows" in r["comparisons_skipped"] and "100" in r["comparisons_skipped"]
    assert r["compare_max_rows"] == 100 and r["rows"]["train_random_negatives"] is None
    assert capped.variants == {}
    # the model that is served does not depend on the diagnostics
    assert r["metrics"]["catboost"] == full.report["metrics"]["catboost"]
    # under the cap (or without one) they are fitted and nothing is reported skipped
    assert full.report["comparisons_skipped"] is None
    roomy = _train(world, compare_random_negatives=False, yetirank=True, compare_max_rows=10**9)
    assert "catboost_yetirank" in roomy.report["metrics"] and roomy.report["comparisons_skipped"] is None


def test_comparisons_skipped_names_only_what_was_asked() -> None:
    from hmrec.ranking.trainer import comparisons_skipped

    assert comparisons_skipped(5, 10, True, True) is None
    assert comparisons_skipped(50, None, True, True) is None
    assert comparisons_skipped(50, 10, False, False) is None
    assert comparisons_skipped(2_300_000, 1_000_000, False, True) == (
        "comparison models (random negatives) skipped: 2,300,000 training rows > RANKING_COMPARE_MAX_ROWS 1,000,000")


def test_library_defaults_are_the_settings_defaults() -> None:
    """train_ranking without a config trains what `hmrec train` trains with default settings."""
    assert RankingConfig() == RankingConfig.from_settings(Settings())
    assert RankingConfig.from_settings(Settings(RANKING_NEGATIVES_PER_CUSTOMER=0)).negatives_per_customer is None
    assert RankingConfig.from_settings(Settings(), depth=3).depth == 3


def test_config_refuses_unknown_choices() -> None:
    with pytest.raises(ValueError, match="early_stopping"):
        RankingConfig(early_stopping="sometimes")
    with pytest.raises(ValueError, match="negatives"):
        RankingConfig(negatives="hard")
