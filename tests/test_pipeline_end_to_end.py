"""The whole system on a tiny generated dataset: features -> train -> registry -> recommend
-> evaluate, through the same functions `hmrec run` calls (real Delta, MLflow, FAISS,
CatBoost; nothing mocked)."""

from __future__ import annotations

import datetime as dt
import io
import json
from contextlib import contextmanager

import polars as pl
import pytest
from rich.console import Console

from hmrec.config import Settings
from hmrec.data import generate
from hmrec.pipelines.evaluate import run_evaluate_step
from hmrec.pipelines.features import run_feature_pipeline
from hmrec.pipelines.run import STEPS, run_all
from hmrec.pipelines.train import split_layout, train_ranking_stage, train_retrieval_stage
from hmrec.registry import ModelRegistry
from hmrec.serving.loading import load_recommender
from hmrec.serving.recommender import FILTER_POLICIES
from hmrec.store import FeatureStore


def tiny_settings(home, **overrides) -> Settings:
    values = dict(HOME_DIR=home, TWO_TOWER_NUM_EPOCHS=2, TWO_TOWER_MODEL_BATCH_SIZE=256,
                  RANKING_ITERATIONS=20, RANKING_DEPTH=4, SEED=7)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = tiny_settings(home)
    generate(settings.data_dir, n_customers=300, seed=7)
    run_feature_pipeline(settings)
    first = [train_retrieval_stage(settings), train_ranking_stage(settings)]
    return settings, first


def test_reports_follow_the_design_shape(trained):
    settings, _ = trained
    for step in ("features", "retrieval", "ranking"):
        report = json.loads((settings.reports_dir / f"{step}.json").read_text())
        assert report["step"] == step
    retrieval = json.loads((settings.reports_dir / "retrieval.json").read_text())
    assert retrieval["split"] == "validation"
    # the model is reported beside its baselines, on the same split
    assert {"two_tower", "popularity", "random"} <= set(retrieval["metrics"])
    for metrics in retrieval["metrics"].values():
        assert 0.0 <= metrics["top_100_accuracy"] <= 1.0
    assert len(retrieval["history"]) == 2
    ranking = json.loads((settings.reports_dir / "ranking.json").read_text())
    assert abs(sum(ranking["feature_importance"].values()) - 1.0) < 1e-6


def test_time_layout_keeps_the_future_out(trained):
    settings, _ = trained
    layout = split_layout(FeatureStore(settings.store_dir), settings)
    weeks = settings.RANKING_TRAIN_WEEKS
    assert layout["retrieval_train_end"] == layout["validation_start"] - dt.timedelta(days=7 * weeks)
    assert layout["test_start"] == layout["validation_start"] + dt.timedelta(days=7)
    retrieval = json.loads((settings.reports_dir / "retrieval.json").read_text())
    assert retrieval["layout"]["retrieval_train_end"] == layout["retrieval_train_end"].isoformat()


def test_first_training_registers_version_one_as_champion(trained):
    settings, (retrieval, ranking) = trained
    assert [(r.name, r.version, r.champion) for r in retrieval.registered] == [
        ("query_model", 1, True), ("candidate_model", 1, True)]
    assert [(r.name, r.version, r.champion) for r in ranking.registered] == [("ranking_model", 1, True)]
    lineage = ModelRegistry.from_settings(settings).get_feature_view("query_model", alias="champion")
    assert lineage["name"] == "retrieval" and int(lineage["version"]) == 1
    assert "customer_id" in lineage["columns"] and "month_sin" in lineage["columns"]


@pytest.fixture(scope="module")
def recommender(trained):
    settings, _ = trained
    return load_recommender(settings)


@pytest.fixture(scope="module")
def test_day(trained):
    settings, _ = trained
    return split_layout(FeatureStore(settings.store_dir), settings)["test_start"]


def test_recommendations_are_known_distinct_articles(recommender, test_day):
    customers = recommender.customers["customer_id"].head(40).to_list()
    known = set(recommender.articles["article_id"].to_list())
    for rec in recommender.recommend_batch(customers, test_day, k=12):
        assert len(rec.article_ids) == 12
        assert len(set(rec.article_ids)) == 12
        assert set(rec.article_ids) <= known
        assert rec.scores == sorted(rec.scores, reverse=True) or "popularity" in rec.stages


def test_single_and_batch_agree(recommender, test_day):
    customers = recommender.customers["customer_id"].head(15).to_list()
    batch = recommender.recommend_batch(customers, test_day, k=12)
    for rec in batch:
        one = recommender.recommend(rec.customer_id, test_day, k=12)
        assert one.article_ids == rec.article_ids
        assert one.scores == pytest.approx(rec.scores, rel=1e-6)


def test_unknown_customer_gets_a_flagged_cold_start(recommender, test_day):
    rec = recommender.recommend("f" * 64, test_day, k=12)
    assert rec.cold_start is True
    assert len(rec.article_ids) == 12 and set(rec.stages) == {"popularity"}
    young = recommender.recommend("e" * 64, test_day, k=12, age=21)
    assert young.cold_start is True and len(young.article_ids) == 12


def test_exclude_purchased_never_returns_a_past_purchase(recommender, test_day):
    history = recommender.history.filter(pl.col("t_dat") < test_day)
    buyers = history.group_by("customer_id").len().sort("len", descending=True)["customer_id"].head(20).to_list()
    strict = recommender.with_policy("exclude_purchased")
    for rec in strict.recommend_batch(buyers, test_day, k=12):
        bought = set(history.filter(pl.col("customer_id") == rec.customer_id)["article_id"].to_list())
        ranked = [a for a, s in zip(rec.article_ids, rec.stages) if s == "ranking"]
        assert not bought & set(ranked)


def test_repurchase_policy_offers_recent_purchases_as_candidates(recommender, test_day):
    history = recommender.history.filter(
        (pl.col("t_dat") < test_day) & (pl.col("t_dat") >= test_day - dt.timedelta(days=28)))
    customer = history["customer_id"][0]
    recent = set(history.filter(pl.col("customer_id") == customer)["article_id"].to_list())
    keep = recommender.with_policy("exclude_purchased_except_repurchase").candidates([customer], test_day)[customer]
    drop = recommender.with_policy("exclude_purchased").candidates([customer], test_day)[customer]
    assert recent <= set(keep)
    assert not recent & set(drop)


def test_unknown_filter_policy_is_a_clear_error(recommender):
    with pytest.raises(ValueError, match="unknown filter policy"):
        recommender.with_policy("drop_everything")


def test_evaluation_compares_every_system_on_the_same_customers(trained):
    settings, _ = trained
    step = run_evaluate_step(settings)
    report = json.loads((settings.reports_dir / "evaluate.json").read_text())
    assert report["step"] == "evaluate" and report["split"] == "test"
    systems = set(report["metrics"])
    expected = {"popularity", "popularity_by_age", "repurchase_popularity", "als", "two_tower", "pipeline",
                *(f"pipeline_{p}" for p in FILTER_POLICIES)}
    assert expected <= systems
    for name, metrics in report["metrics"].items():
        for metric in ("map_at_12", "recall_at_12", "ndcg_at_12"):
            assert 0.0 <= metrics[metric] <= 1.0, (name, metric)
    default = f"pipeline_{settings.FILTER_POLICY}"
    assert report["metrics"]["pipeline"] == report["metrics"][default]
    # the default policy is scored once and reported under both names, `pipeline` first
    names = list(report["metrics"])
    assert names.index("pipeline") == min(i for i, n in enumerate(names) if n.startswith("pipeline"))
    assert default in report["system_seconds"] and "pipeline" not in report["system_seconds"]
    assert report["recall_curves"]["pipeline"] == report["recall_curves"][default]
    assert step.report_path.exists() and step.report_path.name == "index.html"


def test_second_training_creates_version_two_and_the_alias_follows_the_metric(trained):
    settings, (first_retrieval, first_ranking) = trained
    worse = tiny_settings(settings.HOME_DIR, TWO_TOWER_NUM_EPOCHS=1, TWO_TOWER_LEARNING_RATE=1e-6)
    second = train_retrieval_stage(worse)
    registry = ModelRegistry.from_settings(settings)
    for reg in second.registered:
        assert reg.version == 2
        better = reg.metric_value >= first_retrieval.registered[0].metric_value
        assert reg.champion == better
        assert registry.champion(reg.name) == (2 if better else 1)
    forced = train_retrieval_stage(worse, force=True)
    assert all(r.version == 3 and r.champion for r in forced.registered)
    assert registry.champion("query_model") == 3


def test_run_all_runs_every_step_in_order_through_the_hook(tmp_path):
    raw_dir = tmp_path / "raw"
    generate(raw_dir, n_customers=200, seed=3)
    settings = tiny_settings(tmp_path / "home", DATA_DIR=raw_dir, TWO_TOWER_NUM_EPOCHS=1)
    seen: list[tuple[str, str]] = []

    @contextmanager
    def hook(name):
        seen.append(("start", name))
        yield
        seen.append(("end", name))

    out = io.StringIO()
    seconds = run_all(settings, Console(file=out, width=120), step_hook=hook)
    assert list(seconds) == list(STEPS)
    assert seen == [(edge, step) for step in STEPS for edge in ("start", "end")]
    assert all(v > 0 for v in seconds.values())
    # the raw files were read once and handed to the feature pipeline whole
    raw_rows = sum(1 for _ in open(raw_dir / "transactions_train.csv")) - 1
    features = json.loads((settings.reports_dir / "features.json").read_text())
    assert features["rows"]["transactions"] == raw_rows
    assert json.loads((settings.reports_dir / "evaluate.json").read_text())["metrics"]["pipeline"]
    assert "Headline" in out.getvalue() and "total" in out.getvalue()

    # a later step alone, on the stores the run left (the benchmark's --from)
    seen.clear()
    again = run_all(settings, Console(file=io.StringIO()), step_hook=hook, from_step="evaluate")
    assert list(again) == ["evaluate"] and seen == [("start", "evaluate"), ("end", "evaluate")]
    with pytest.raises(ValueError, match="unknown step 'train'"):
        run_all(settings, Console(file=io.StringIO()), from_step="train")


def test_same_data_settings_and_seed_give_identical_metrics(tmp_path):
    """Run after run on one machine, every reported number is the same to the last bit
    (thread counts, dict orders and group-by orders must not leak into a metric)."""
    raw_dir = tmp_path / "raw"
    generate(raw_dir, n_customers=200, seed=5)
    reports = []
    for run in ("a", "b"):
        settings = tiny_settings(tmp_path / run, DATA_DIR=raw_dir, TWO_TOWER_NUM_EPOCHS=1)
        run_all(settings, Console(file=io.StringIO()))
        reports.append({step: json.loads((settings.reports_dir / f"{step}.json").read_text())
                        for step in ("retrieval", "ranking", "evaluate")})
    for step in ("retrieval", "ranking", "evaluate"):
        assert reports[0][step]["metrics"] == reports[1][step]["metrics"], step
    assert reports[0]["evaluate"].get("intervals") == reports[1]["evaluate"].get("intervals")
