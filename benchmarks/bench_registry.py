"""Cost of the model registry: data fingerprint, registration, loading (hmrec.registry).

Usage:
    python benchmarks/bench_registry.py                    # 10M-row fingerprint, ranking model
    python benchmarks/bench_registry.py --rows 31788324    # fingerprint at the full H&M size
    python benchmarks/bench_registry.py --rows 100000 --versions 1 --results /tmp/registry_check.json

Measures, on a fresh SQLite registry in a temporary folder:
- fingerprint(): seconds for a transactions-shaped frame (64-hex customer ids, 10-digit
  article ids, date, price, channel);
- backend creation (MLflow's SQLite migrations, once per home);
- register(): seconds per version for a CatBoost ranking model with the reference
  settings (100 iterations, depth 10), and for the two towers when hmrec.retrieval has
  a TwoTowerModel;
- load() + predict on 10,000 rows.
Figures are printed and written to benchmarks/results/registry.json (or --results), with
the machine block (benchmarks/machine.py; its yardstick runs in a child process).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from machine import RESULTS, Run, describe, peak_rss_mb, write_result


def _transactions(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    cust = pl.Series(rng.integers(0, 1_371_980, n)).cast(pl.String).str.pad_start(64, "0")
    art = pl.Series(rng.integers(0, 105_542, n)).cast(pl.String).str.pad_start(10, "0")
    return pl.DataFrame(
        {
            "t_dat": pl.Series(rng.integers(17_794, 18_527, n)).cast(pl.Date),
            "customer_id": cust,
            "article_id": art,
            "price": rng.random(n) * 0.1,
            "sales_channel_id": rng.integers(1, 3, n).astype(np.int8),
        }
    )


def _ranking_frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    garments = np.array(["Jersey", "Knitwear", "Trousers", "Shoes", "Dresses"])
    groups = np.array(["Ladieswear", "Menswear", "Divided", "Sport", "Baby/Children"])
    price = rng.random(n) * 0.1
    g = garments[rng.integers(0, 5, n)]
    label = ((price > 0.05) ^ (g == "Knitwear") ^ (rng.random(n) < 0.2)).astype(np.int8)
    return pl.DataFrame(
        {
            "customer_id": [f"{i:064x}" for i in rng.integers(0, 5_000, n)],
            "article_id": [f"{i:010d}" for i in rng.integers(0, 20_000, n)],
            "price": price,
            "age": rng.integers(18, 80, n).astype(float),
            "garment_group_name": g,
            "index_group_name": groups[rng.integers(0, 5, n)],
            "sales_7d": rng.poisson(3, n).astype(float),
            "label": label,
        }
    )


def _register_towers(reg, fingerprint) -> dict[str, float]:
    """Register query and candidate models of an untrained reference-size two-tower model
    (50k customers, 20k articles: registration cost does not depend on training)."""
    import math

    from hmrec.registry import CandidatePyfunc, QueryPyfunc
    from hmrec.retrieval.config import TwoTowerConfig
    from hmrec.retrieval.model import TwoTowerModel

    rng = np.random.default_rng(3)
    n = 200_000
    articles = pl.DataFrame(
        {
            "article_id": [f"{i:010d}" for i in range(20_000)],
            "garment_group_name": [f"g{i % 21}" for i in range(20_000)],
            "index_group_name": [f"ig{i % 5}" for i in range(20_000)],
        }
    )
    month = rng.integers(1, 13, n)
    rows = pl.DataFrame(
        {
            "customer_id": [f"{i:064x}" for i in rng.integers(0, 50_000, n)],
            "article_id": [f"{i:010d}" for i in rng.integers(0, 20_000, n)],
            "age": rng.integers(18, 80, n).astype(float),
            "month_sin": np.sin(2 * math.pi * month / 12),
            "month_cos": np.cos(2 * math.pi * month / 12),
        }
    )
    model = TwoTowerModel.untrained(rows, articles, TwoTowerConfig())
    fv = {"name": "retrieval", "version": 1, "columns": rows.columns}
    data_fp = fingerprint(rows)
    seconds = {}
    with reg.start_run("retrieval"):
        for name, wrapper, example in (
            ("query_model", QueryPyfunc(model), rows.head(5)),
            ("candidate_model", CandidatePyfunc(model), articles.head(5)),
        ):
            v = reg.register(name, wrapper, example, {"embedding_dim": 16}, {"val_top_100_accuracy": 0.1},
                             fv, data_fp, "val_top_100_accuracy")
            seconds[name] = v.seconds
            print(f"register {name} v{v.version}: {v.seconds:.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows to fingerprint")
    parser.add_argument("--versions", type=int, default=3, help="ranking versions to register")
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/registry.json)")
    args = parser.parse_args()

    with Run(isolate=True) as run:
        out = measure(args.rows, args.versions)
    out["peak_rss_mb"] = peak_rss_mb()
    print(f"peak RSS {out['peak_rss_mb']:.0f} MB")
    path = write_result(args.results or RESULTS / "registry.json", out, run)
    print(f"written to {path}")
    print(describe(run))


def measure(rows: int, versions: int) -> dict:
    """The figures: fingerprint of ``rows`` rows, ``versions`` ranking registrations, the towers, load."""
    t0 = time.perf_counter()
    from hmrec.ranking.model import RankingModel
    from hmrec.registry import CHAMPION, ModelRegistry, RankingPyfunc, fingerprint

    import_s = time.perf_counter() - t0
    out: dict = {"import_s": import_s}

    df = _transactions(rows, seed=0)
    t = time.perf_counter()
    fp = fingerprint(df)
    fp_s = time.perf_counter() - t
    out["fingerprint"] = {"rows": rows, "seconds": fp_s, "rows_per_s": rows / fp_s, "value": fp}
    del df
    print(f"fingerprint {rows:,} rows: {fp_s:.2f} s ({rows / fp_s / 1e6:.1f} M rows/s)")

    features = ["price", "age", "garment_group_name", "index_group_name", "sales_7d"]
    train = _ranking_frame(50_000, seed=1)
    ranker = RankingModel(iterations=100, depth=10, seed=1).fit(train, features)
    fresh = _ranking_frame(10_000, seed=2)
    fv = {"name": "ranking", "version": 1, "columns": ["customer_id", "article_id", *features]}
    data_fp = fingerprint(train)

    with tempfile.TemporaryDirectory() as tmp:
        reg = ModelRegistry(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        t, c = time.perf_counter(), time.process_time()
        _ = reg.experiment_id  # creates the database (migrations) and the experiment
        out["backend_create_s"] = time.perf_counter() - t
        out["backend_create_cpu_s"] = time.process_time() - c
        print(f"SQLite backend + experiment created: {out['backend_create_s']:.2f} s")

        register_s = []
        cpu0 = time.process_time()
        for i in range(versions):
            v = reg.register(
                "ranking_model", RankingPyfunc(ranker), train.select(fv["columns"]).head(5),
                ranker.params(), {"val_roc_auc": 0.7 + 0.01 * i}, fv, data_fp, "val_roc_auc",
            )
            register_s.append(v.seconds)
            print(f"register ranking_model v{v.version}: {v.seconds:.2f} s ({v.decision})")
        out["register_ranking_s"] = register_s
        out["register_ranking_cpu_s_mean"] = (time.process_time() - cpu0) / versions
        print(f"register ranking_model CPU time: {out['register_ranking_cpu_s_mean']:.2f} s per version "
              "(less sensitive to other load on the machine than wall time)")

        out["register_towers_s"] = _register_towers(reg, fingerprint)

        t = time.perf_counter()
        model = reg.load("ranking_model", alias=CHAMPION)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        scores = model.predict(fresh.select(features).to_pandas())
        predict_s = time.perf_counter() - t
        same = bool(np.array_equal(scores, ranker.predict(fresh)))
        out["load_ranking_s"] = load_s
        out["predict_10k_s"] = predict_s
        out["scores_identical"] = same
        print(f"load by alias: {load_s:.2f} s; predict 10,000 rows: {predict_s:.3f} s; identical: {same}")
    return out


if __name__ == "__main__":
    main()
