"""query_model and candidate_model through a real temporary SQLite MLflow registry.

A tiny two-tower model is trained on a hand-made frame; the registered towers, loaded
back from the registry, must embed raw rows (including unseen ids and missing ages)
exactly as the in-memory towers do.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from registry_backend import fresh_registry

from hmrec.registry import CHAMPION, CandidatePyfunc, ModelRegistry, QueryPyfunc, fingerprint
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.trainer import train as train_two_tower

QUERY_COLUMNS = ["customer_id", "age", "month_sin", "month_cos"]
ITEM_COLUMNS = ["article_id", "garment_group_name", "index_group_name"]
VIEW = {
    "name": "retrieval",
    "version": 1,
    "columns": ["customer_id", "article_id", "t_dat", "price", "month_sin", "month_cos", "age",
                "club_member_status", "age_group", "garment_group_name", "index_group_name"],
}


def _articles(n: int) -> pl.DataFrame:
    garments = ["Jersey", "Knitwear", "Trousers"]
    groups = ["Ladieswear", "Menswear", "Divided"]
    return pl.DataFrame(
        {
            "article_id": [f"{i:010d}" for i in range(n)],
            "garment_group_name": [garments[i % 3] for i in range(n)],
            "index_group_name": [groups[(i // 3) % 3] for i in range(n)],
        }
    )


def _rows(n: int, seed: int, articles: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = [dt.date(2020, 6, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 60, n)]
    month = np.array([d.month for d in days])
    ages = rng.integers(18, 70, n).astype(float)
    ages[::11] = np.nan
    base = pl.DataFrame(
        {
            "customer_id": [f"{i:064x}" for i in rng.integers(0, 40, n)],
            "article_id": articles["article_id"].gather(rng.integers(0, articles.height, n)),
            "t_dat": days,
            "price": rng.random(n) * 0.1,
            "age": pl.Series(ages).fill_nan(None),
            "month_sin": np.sin(2 * math.pi * month / 12),
            "month_cos": np.cos(2 * math.pi * month / 12),
        }
    )
    return base.join(articles, on="article_id", how="left")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return fresh_registry(tmp_path_factory, "registry_towers")


@pytest.fixture(scope="module")
def articles() -> pl.DataFrame:
    return _articles(60)


@pytest.fixture(scope="module")
def train_rows(articles) -> pl.DataFrame:
    return _rows(600, seed=1, articles=articles)


@pytest.fixture(scope="module")
def two_tower(train_rows, articles):
    config = TwoTowerConfig(num_epochs=2, batch_size=64, seed=7, eval_every_epoch=False, num_threads=1)
    return train_two_tower(train_rows, None, articles, config).model


@pytest.fixture(scope="module")
def registered(registry, two_tower, train_rows, articles):
    """Both towers registered in one run, as the training pipeline does."""
    metrics = {"val_top_100_accuracy": 0.42, "val_recall_at_100": 0.3}
    with registry.start_run("retrieval"):
        common = dict(
            params={"embedding_dim": 16, "epochs": 2},
            metrics=metrics,
            feature_view=VIEW,
            data_fingerprint=fingerprint(train_rows),
            metric_name="val_top_100_accuracy",
        )
        q = registry.register("query_model", QueryPyfunc(two_tower), train_rows.head(5), **common)
        c = registry.register("candidate_model", CandidatePyfunc(two_tower), articles.head(5), **common)
    return q, c


def test_towers_register_with_signatures_of_raw_features(registry, registered, two_tower):
    q, c = registered
    assert (q.version, c.version) == (1, 1) and q.champion and c.champion
    assert q.run_id == c.run_id
    query = registry.load("query_model", alias=CHAMPION)
    inputs = {s.name: s.type.name for s in query.metadata.get_input_schema().inputs}
    assert inputs == {"customer_id": "string", "age": "double", "month_sin": "double", "month_cos": "double"}
    out = query.metadata.get_output_schema().inputs[0]
    # 16-d tower output, plus the popularity prior's column when the model carries one
    width = two_tower.query_tower.embedding_size
    assert width == 16 + (two_tower.prior is not None)
    assert out.type == np.dtype("float32") and out.shape == (-1, width)
    cand = registry.load("candidate_model", alias=CHAMPION)
    assert [s.name for s in cand.metadata.get_input_schema().inputs] == ITEM_COLUMNS


def test_query_embeddings_round_trip(registry, registered, two_tower, articles):
    fresh = _rows(200, seed=5, articles=articles).with_columns(
        # unseen customers fall into the OOV bucket the same way after loading
        pl.when(pl.int_range(pl.len()) % 7 == 0)
        .then(pl.lit("f" * 64))
        .otherwise(pl.col("customer_id"))
        .alias("customer_id")
    )
    expected = two_tower.query_tower.embed(fresh)
    loaded = registry.load("query_model", version=1)
    got = loaded.predict(fresh.select(QUERY_COLUMNS).to_pandas())
    assert got.dtype == np.float32 and got.shape == (200, two_tower.query_tower.embedding_size)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert np.abs(expected).max() > 0  # a real signal, not zeros


def test_candidate_embeddings_round_trip(registry, registered, two_tower, articles):
    unseen = pl.DataFrame({"article_id": ["9999999999"], "garment_group_name": ["Shoes"], "index_group_name": [None]})
    catalogue = pl.concat([articles, unseen], how="vertical_relaxed")
    expected = two_tower.item_tower.embed(catalogue)
    got = registry.load("candidate_model").predict(catalogue.to_pandas())
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_tower_lineage(registry, registered, train_rows):
    lineage = registry.get_feature_view("query_model", alias=CHAMPION)
    assert (lineage["name"], lineage["version"], lineage["columns"]) == ("retrieval", 1, VIEW["columns"])
    assert lineage["data_fingerprint"] == fingerprint(train_rows)
    assert registry.get_version("candidate_model", 1).metrics["val_top_100_accuracy"] == 0.42
