"""Model registry on a real temporary SQLite MLflow backend, with a tiny CatBoost ranking model.

One registry per module (creating the SQLite database runs MLflow's migrations, which
takes seconds); every test registers under its own model name so tests stay
independent of each other and of their order.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import polars as pl
import pytest
from registry_backend import fresh_registry

from hmrec.ranking.model import RankingModel
from hmrec.registry import (
    CHAMPION,
    ModelRegistry,
    RankingPyfunc,
    RegistryError,
    fingerprint,
)
from hmrec.registry.tracking import sqlite_path

FEATURES = ["price", "age", "garment_group_name", "index_group_name"]
FEATURE_VIEW = {"name": "ranking", "version": 2, "columns": ["customer_id", "article_id", *FEATURES]}


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    garments = np.array(["Jersey", "Knitwear", "Trousers", "Shoes"])
    groups = np.array(["Ladieswear", "Menswear", "Divided"])
    price = rng.random(n) * 0.1
    g = garments[rng.integers(0, 4, n)]
    age = rng.integers(18, 70, n).astype(float)
    label = ((price > 0.05) ^ (g == "Knitwear") ^ (rng.random(n) < 0.1)).astype(np.int8)
    df = pl.DataFrame(
        {
            "customer_id": [f"{i:064x}" for i in rng.integers(0, 50, n)],
            "article_id": [f"{i:010d}" for i in rng.integers(0, 200, n)],
            "price": price,
            "age": age,
            "garment_group_name": g,
            "index_group_name": groups[rng.integers(0, 3, n)],
            "label": label,
        }
    )
    # Missing values as serving sees them: no age, unknown garment group.
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("age")).alias("age"),
        pl.when(pl.int_range(pl.len()) % 23 == 0)
        .then(None)
        .otherwise(pl.col("garment_group_name"))
        .alias("garment_group_name"),
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return fresh_registry(tmp_path_factory, "registry_home")


@pytest.fixture(scope="module")
def train() -> pl.DataFrame:
    return _frame(400, seed=1)


@pytest.fixture(scope="module")
def ranker(train: pl.DataFrame) -> RankingModel:
    return RankingModel(iterations=20, depth=4, seed=3, thread_count=1).fit(train, FEATURES)


def _register(registry: ModelRegistry, name: str, ranker: RankingModel, train: pl.DataFrame, val: float, **kw):
    return registry.register(
        name,
        RankingPyfunc(ranker),
        input_example=train.select("customer_id", "article_id", *FEATURES).head(5),
        params=ranker.params(),
        metrics={"val_roc_auc": val, "train_roc_auc": 0.99},
        feature_view=FEATURE_VIEW,
        data_fingerprint=fingerprint(train),
        metric_name="val_roc_auc",
        **kw,
    )


def test_registration_records_signature_example_params_metrics_and_lineage_tags(registry, ranker, train, tmp_path):
    reg = _register(registry, "rank_meta", ranker, train, 0.8)
    assert reg.version == 1 and reg.champion and reg.previous_champion is None
    assert reg.model_uri == "models:/rank_meta/1"
    # Artifacts go beside the SQLite file, not into ./mlruns of whatever the cwd is.
    art_root = sqlite_path(registry.uri).parent / "mlartifacts"
    assert len(list(art_root.rglob("model.cbm"))) == 1

    info = registry.get_version("rank_meta", 1)
    assert info.tags["hmrec.feature_view.name"] == "ranking"
    assert info.tags["hmrec.feature_view.version"] == "2"
    assert json.loads(info.tags["hmrec.feature_view.columns"]) == FEATURE_VIEW["columns"]
    assert info.tags["hmrec.data_fingerprint"] == fingerprint(train)
    assert info.metrics == {"val_roc_auc": 0.8, "train_roc_auc": 0.99}
    assert info.tags["hmrec.champion_decision"].startswith("promoted: first champion")
    assert info.aliases == (CHAMPION,)

    run = registry.client.get_run(reg.run_id)
    assert run.data.params["depth"] == "4" and run.data.params["iterations"] == "20"
    assert run.data.metrics["val_roc_auc"] == 0.8
    assert run.data.tags["hmrec.rank_meta.data_fingerprint"] == fingerprint(train)
    assert run.data.tags["hmrec.rank_meta.feature_view"] == "ranking:2"

    model = registry.load("rank_meta", version=1)
    inputs = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    assert inputs == {  # the model's features only: the example's id columns are cut
        "price": "double",
        "age": "double",
        "garment_group_name": "string",
        "index_group_name": "string",
    }
    out = model.metadata.get_output_schema().inputs[0]
    assert out.type == np.dtype("float64")
    example = _input_example(registry, "rank_meta", 1, tmp_path)
    assert list(example.columns) == FEATURES
    assert len(example) == 5
    np.testing.assert_array_equal(example["price"].to_numpy(), train["price"].head(5).to_numpy())


def _input_example(registry: ModelRegistry, name: str, version: int, dst) -> pd.DataFrame:
    """The input example as stored with the version (read from its artifacts)."""
    import mlflow.artifacts
    import mlflow.models

    from hmrec.registry import using_uri

    with using_uri(registry.uri):
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dst))
    return mlflow.models.Model.load(local).load_input_example(local)


def test_round_trip_scores_are_identical(registry, ranker, train):
    _register(registry, "rank_roundtrip", ranker, train, 0.7)
    fresh = _frame(300, seed=9)  # unseen rows, with nulls and the same raw columns serving has
    expected = ranker.predict(fresh)
    loaded = registry.load("rank_roundtrip", alias=CHAMPION)
    got = loaded.predict(fresh.to_pandas())
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    assert loaded.unwrap_python_model().model.feature_names_ == FEATURES
    # Extra columns and another column order do not change scores.
    shuffled = fresh.select("label", *reversed(fresh.columns[:-1])).to_pandas()
    np.testing.assert_array_equal(loaded.predict(shuffled), expected)


def test_champion_alias_moves_only_when_metric_allows(registry, ranker, train):
    name = "rank_alias"
    v1 = _register(registry, name, ranker, train, 0.70)
    assert (v1.version, v1.champion) == (1, True)

    v2 = _register(registry, name, ranker, train, 0.65)
    assert (v2.version, v2.champion, v2.previous_champion) == (2, False, 1)
    assert registry.champion(name) == 1
    assert "kept champion v1" in registry.get_version(name, 2).tags["hmrec.champion_decision"]

    v3 = _register(registry, name, ranker, train, 0.70)  # equal counts as good enough
    assert (v3.version, v3.champion, v3.previous_champion) == (3, True, 1)
    assert registry.champion(name) == 3

    v4 = _register(registry, name, ranker, train, 0.10, force=True)
    assert (v4.version, v4.champion) == (4, True)
    assert v4.decision == "promoted: forced over champion v3"

    v5 = _register(registry, name, ranker, train, 0.05)  # compared with the forced v4's 0.10
    assert v5.champion is False
    assert registry.get_version(name, alias=CHAMPION).version == 4
    assert registry.get_version(name).version == 4  # no version/alias: the champion
    assert registry.list_versions(name) == [1, 2, 3, 4, 5]
    assert registry.best_version(name, "val_roc_auc") == 3  # tie 0.70 (v1, v3): the newer
    assert registry.best_version(name, "val_roc_auc", higher_is_better=False) == 5


def test_lower_is_better_metric(registry, ranker, train):
    name = "rank_loss"
    kw = dict(higher_is_better=False)
    reg = lambda v: registry.register(  # noqa: E731
        name, RankingPyfunc(ranker), train.select(FEATURES).head(3), {}, {"val_logloss": v},
        FEATURE_VIEW, "fp1-x", "val_logloss", **kw,
    )
    assert reg(0.5).champion
    assert not reg(0.6).champion
    assert reg(0.4).champion
    assert registry.champion(name) == 3


def test_load_by_version_alias_and_best_gives_that_version(registry, ranker, train):
    name = "rank_load"
    other = RankingModel(iterations=5, depth=2, seed=11, thread_count=1).fit(train, FEATURES)
    _register(registry, name, ranker, train, 0.9)
    _register(registry, name, other, train, 0.5)
    fresh = _frame(50, seed=5)
    np.testing.assert_array_equal(registry.load(name, version=2).predict(fresh.to_pandas()), other.predict(fresh))
    np.testing.assert_array_equal(registry.load(name, alias=CHAMPION).predict(fresh.to_pandas()), ranker.predict(fresh))
    best = registry.best_version(name, "val_roc_auc")
    assert best == 1
    np.testing.assert_array_equal(registry.load(name, version=best).predict(fresh.to_pandas()), ranker.predict(fresh))


def test_feature_view_lineage(registry, ranker, train):
    _register(registry, "rank_lineage", ranker, train, 0.6)
    lineage = registry.get_feature_view("rank_lineage", alias=CHAMPION)
    assert lineage["name"] == "ranking"
    assert lineage["version"] == 2
    assert lineage["columns"] == FEATURE_VIEW["columns"]
    assert lineage["data_fingerprint"] == fingerprint(train)
    assert lineage["model_version"] == 1


def test_unknown_name_version_alias_give_clear_errors(registry, ranker, train):
    _register(registry, "rank_errors", ranker, train, 0.6)
    with pytest.raises(RegistryError, match=r"unknown model 'nope'.*registered models: .*rank_errors"):
        registry.load("nope")
    with pytest.raises(RegistryError, match=r"'rank_errors' has no version 7; versions: 1"):
        registry.load("rank_errors", version=7)
    with pytest.raises(RegistryError, match=r"no alias 'staging'; aliases: champion"):
        registry.get_feature_view("rank_errors", alias="staging")
    with pytest.raises(RegistryError, match=r"no version of 'rank_errors' has metric 'ndcg'.*val_roc_auc"):
        registry.best_version("rank_errors", "ndcg")
    with pytest.raises(RegistryError, match="not both"):
        registry.load("rank_errors", version=1, alias=CHAMPION)


def test_bad_input_is_rejected_before_anything_is_stored(registry, ranker, train):
    name = "rank_bad"
    example = train.select(FEATURES).head(3)
    good = dict(params={}, feature_view=FEATURE_VIEW, data_fingerprint="fp1-x")
    wrapped = RankingPyfunc(ranker)
    with pytest.raises(RegistryError, match=r"metric_name 'val_auc' is not among.*val_roc_auc"):
        registry.register(name, wrapped, example, metrics={"val_roc_auc": 0.5}, metric_name="val_auc", **good)
    with pytest.raises(RegistryError, match="not finite"):
        registry.register(name, RankingPyfunc(ranker), example, metrics={"m": float("nan")}, metric_name="m", **good)
    with pytest.raises(RegistryError, match=r"missing: \['columns'\]"):
        registry.register(
            name, RankingPyfunc(ranker), example, {}, {"m": 1.0}, {"name": "v", "version": 1}, "fp1-x", "m"
        )
    with pytest.raises(RegistryError, match=r"lacks the model's input column\(s\) \['price'\]"):
        registry.register(name, wrapped, example.drop("price"), metrics={"m": 1.0}, metric_name="m", **good)
    with pytest.raises(RegistryError, match="has no rows"):
        registry.register(name, RankingPyfunc(ranker), example.head(0), metrics={"m": 1.0}, metric_name="m", **good)
    with pytest.raises(RegistryError, match="must be a QueryPyfunc"):
        registry.register(name, ranker, example, metrics={"m": 1.0}, metric_name="m", **good)
    with pytest.raises(RegistryError, match="unknown model 'rank_bad'"):
        registry.list_versions(name)


def test_input_example_is_capped_and_accepts_pandas(registry, ranker, train, tmp_path):
    reg = registry.register(
        "rank_pandas", RankingPyfunc(ranker), train.select(FEATURES).to_pandas(), {}, {"m": 1.0},
        FEATURE_VIEW, "fp1-x", "m",
    )
    frame = _input_example(registry, "rank_pandas", reg.version, tmp_path)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 10


def test_lineage_names_a_feature_view_the_store_can_open(registry, ranker, train, tmp_path):
    from hmrec.store import FeatureStore

    store = FeatureStore(tmp_path / "store")
    rows = train.unique(["customer_id", "article_id"], keep="first", maintain_order=True)
    fg = store.get_or_create_feature_group("ranking_rows", version=1, primary_key=["customer_id", "article_id"])
    fg.insert(rows)
    view = store.get_or_create_feature_view(
        "ranking", fg.select(["customer_id", "article_id", *FEATURES, "label"]), version=3, labels=["label"]
    )
    registry.register(
        "rank_store_view", RankingPyfunc(ranker), rows.select(FEATURES).head(3), ranker.params(),
        {"val_roc_auc": 0.7}, view, fingerprint(rows), "val_roc_auc",
    )
    lineage = registry.get_feature_view("rank_store_view")
    assert (lineage["name"], lineage["version"]) == ("ranking", 3)
    reopened = store.get_feature_view(lineage["name"], lineage["version"])
    assert lineage["columns"] == reopened.columns
    assert lineage["data_fingerprint"] == fingerprint(rows)


def test_models_registered_inside_one_training_run_share_it(registry, ranker, train):
    import mlflow

    with registry.start_run("train-two-models") as run:
        for epoch, loss in enumerate([0.9, 0.5, 0.3]):
            mlflow.log_metric("train_loss", loss, step=epoch)
        a = _register(registry, "rank_run_a", ranker, train, 0.6)
        b = _register(registry, "rank_run_b", ranker, train, 0.6)  # same params: logged once
    assert a.run_id == b.run_id == run.info.run_id
    history = registry.client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert registry.client.get_run(run.info.run_id).data.params["depth"] == "4"
    assert mlflow.active_run() is None


def test_integer_features_are_declared_double_so_missing_values_pass(registry, train):
    ints = train.with_columns(pl.col("age").fill_null(30).cast(pl.Int16))
    model = RankingModel(iterations=10, depth=3, seed=2, thread_count=1).fit(ints, FEATURES)
    registry.register(
        "rank_int_age", RankingPyfunc(model), ints.select(FEATURES).head(4), {}, {"m": 1.0},
        FEATURE_VIEW, "fp1-x", "m",
    )
    loaded = registry.load("rank_int_age")
    types = {c.name: c.type.name for c in loaded.metadata.get_input_schema().inputs}
    assert types["age"] == "double"
    serving = ints.head(6).with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.col("age")).alias("age")
    )
    as_float = serving.to_pandas()  # Polars turns an integer column with a null into float64
    assert as_float["age"].dtype == np.float64
    np.testing.assert_array_equal(loaded.predict(as_float), model.predict(serving))
    as_int16 = ints.head(6).to_pandas()
    assert as_int16["age"].dtype == np.int16
    np.testing.assert_array_equal(loaded.predict(as_int16), model.predict(ints.head(6)))
