"""Two-tower retrieval quality on generated data over several seeds, next to popularity and random.

Usage:
    python benchmarks/bench_two_tower_quality.py                       # SMALL, 5 seeds, all variants
    python benchmarks/bench_two_tower_quality.py --customers 5000 --seeds 42,43,44 --variant prior_7d
    python benchmarks/bench_two_tower_quality.py --variant reference --variant \\
        'mine;TWO_TOWER_ITEM_FEATURES=embedding:article_id,one_hot:index_name;TWO_TOWER_NUM_EPOCHS=20'

Why several seeds: at SMALL (1,000 customers) the validation and test windows hold only
~250-350 purchases each, so one run's top-100 accuracy moves by about +-0.03 from the
data alone; a "win" over popularity on one seed says little. Every seed generates a
fresh dataset (hmrec.data.synthetic), builds the ``retrieval`` view's columns with plain
Polars joins (the same columns the feature store's view serves; item features come from
the whole articles table, as in the pipeline), splits by time (last 7 days test, the 7
before validation, the rest training), trains every variant and
measures validation AND test. Validation picks the best epoch, so its figures are
optimistic; the test week is untouched by training and selection.

A variant is a name plus Settings overrides (``NAME;KEY=VALUE;KEY=VALUE``), so what the
benchmark measures is exactly what ``hmrec train retrieval`` would do with those settings.
Printed and written: per seed, and mean +- std over seeds of the model, popularity and
random, plus the paired difference model - popularity (same data, so most of the data
noise cancels). Results: benchmarks/results/two_tower_quality[_<customers>].json (--out
NAME or PATH), with the machine block (benchmarks/machine.py; its yardstick runs in a
child process). Smallest check: --seeds 42 --variant 'short;TWO_TOWER_NUM_EPOCHS=1'
--out /tmp/two_tower_quality_check.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl
from machine import RESULTS, Run, describe, peak_rss_mb, write_result

from hmrec.config import Settings
from hmrec.data.loader import load_raw
from hmrec.data.synthetic import generate
from hmrec.features.customers import age_group_expr
from hmrec.features.on_demand import month_cos, month_sin
from hmrec.retrieval import TwoTowerConfig, evaluate, train
from hmrec.retrieval.features import format_feature_specs
from hmrec.retrieval.metrics import (
    evaluate_popularity,
    make_eval_split,
    popularity_scores,
)

SHOW = ("top_100_accuracy", "recall_at_100", "ndcg_at_12")
SYSTEMS = ("two_tower", "popularity", "popularity_prior_window", "random")

#: Named variants: Settings overrides on top of the defaults (explicit, so that results do
#: not change meaning when a default does). All keep the reference towers except
#: ``more_features``.
VARIANTS: dict[str, dict[str, str]] = {
    "prior_7d": {"TWO_TOWER_POPULARITY_PRIOR_DAYS": "7"},
    "prior_14d": {"TWO_TOWER_POPULARITY_PRIOR_DAYS": "14"},
    "prior_28d": {"TWO_TOWER_POPULARITY_PRIOR_DAYS": "28"},
    "more_features_28d": {
        "TWO_TOWER_POPULARITY_PRIOR_DAYS": "28",
        "TWO_TOWER_QUERY_FEATURES": (
            "embedding:customer_id,normalized:age,raw:month_sin,raw:month_cos,one_hot:age_group,one_hot:club_member_status"
        ),
        "TWO_TOWER_ITEM_FEATURES": (
            "embedding:article_id,one_hot:garment_group_name,one_hot:index_group_name,"
            "one_hot:index_name,one_hot:perceived_colour_master_name"
        ),
    },
}


def retrieval_frames(data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Training, validation and test rows of the retrieval view, and the whole articles table."""
    raw = load_raw(data_dir)
    customers = raw.customers.select(
        "customer_id", "age", "club_member_status", age_group_expr(pl.col("age")).alias("age_group")
    )
    view = (
        raw.transactions.select("customer_id", "article_id", "t_dat", "price")
        .with_columns(month_sin(pl.col("t_dat")).alias("month_sin"), month_cos(pl.col("t_dat")).alias("month_cos"))
        .join(customers, on="customer_id", how="left")
        .join(raw.articles.select("article_id", "garment_group_name", "index_group_name"), on="article_id", how="left")
        .sort("t_dat", maintain_order=True)
    )
    last = view["t_dat"].max()
    test_start = last - timedelta(days=6)
    val_start = test_start - timedelta(days=7)
    train_df = view.filter(pl.col("t_dat") < val_start)
    val_df = view.filter((pl.col("t_dat") >= val_start) & (pl.col("t_dat") < test_start))
    test_df = view.filter(pl.col("t_dat") >= test_start)
    return train_df, val_df, test_df, raw.articles


def parse_variant(text: str, known: dict[str, dict[str, str]] = VARIANTS) -> tuple[str, dict[str, str]]:
    """``NAME`` (one of ``known``) or ``NAME;KEY=VALUE;...`` (Settings overrides)."""
    name, *pairs = [p.strip() for p in text.split(";")]
    if not pairs:
        if name not in known:
            raise SystemExit(f"unknown variant {name!r}; built-in: {', '.join(known)} (or NAME;KEY=VALUE;...)")
        return name, known[name]
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"variant {name!r}: {pair!r} is not KEY=VALUE")
        overrides[key.strip()] = value.strip()
    return name, overrides


def window_popularity(
    eval_df: pl.DataFrame, history: pl.DataFrame, articles: pl.DataFrame, cfg: TwoTowerConfig
) -> dict[str, float]:
    """Popularity over the model's prior window (instead of the last week): the part of the
    model's margin that a longer popularity window alone would give."""
    ids = articles["article_id"].cast(pl.String)
    days = cfg.popularity_prior_days or 7
    split = make_eval_split(eval_df, ids)
    return evaluate_popularity(split, popularity_scores(history, ids, days), cfg.top_k, cfg.customer_k)


def config_for(overrides: dict[str, str], threads: int) -> TwoTowerConfig:
    """The TwoTowerConfig ``hmrec train retrieval`` builds from Settings with these overrides."""
    values = {k: (None if v.lower() == "none" else v) for k, v in overrides.items()}
    return TwoTowerConfig.from_settings(Settings(**values), num_threads=threads)


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def summarise(per_seed: list[dict]) -> dict:
    """mean/std over seeds per variant, split, system and metric, plus model - popularity."""
    out: dict = {}
    for variant in per_seed[0]["variants"]:
        v: dict = {}
        for split in ("validation", "test"):
            s: dict = {}
            for system in SYSTEMS:
                s[system] = {m: mean_std([r["variants"][variant][split][system][m] for r in per_seed]) for m in SHOW}
            s["two_tower_minus_popularity"] = {
                m: mean_std(
                    [
                        r["variants"][variant][split]["two_tower"][m] - r["variants"][variant][split]["popularity"][m]
                        for r in per_seed
                    ]
                )
                for m in SHOW
            }
            v[split] = s
        v["best_epoch"] = mean_std([float(r["variants"][variant]["best_epoch"]) for r in per_seed])
        v["seconds"] = mean_std([r["variants"][variant]["seconds"] for r in per_seed])
        out[variant] = v
    return out


def print_summary(summary: dict) -> None:
    for variant, v in summary.items():
        print(f"\n== {variant}: mean +- std over {v['best_epoch']['n']} seeds "
              f"(best epoch {v['best_epoch']['mean']:.1f}, {v['seconds']['mean']:.1f} s per training)")
        print(f"  {'':28s}" + "".join(f"{m:>22s}" for m in SHOW))
        for split in ("validation", "test"):
            for system in (*SYSTEMS, "two_tower_minus_popularity"):
                cells = "".join(
                    f"{v[split][system][m]['mean']:>13.3f} +- {v[split][system][m]['std']:.3f}" for m in SHOW
                )
                print(f"  {split[:4]} {system:23s}{cells}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--seeds", default="42,43,44,45,46", help="comma-separated generator seeds")
    p.add_argument("--variant", action="append", default=None,
                   help=f"NAME (built-in: {', '.join(VARIANTS)}) or 'NAME;KEY=VALUE;...'; repeatable")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", default=None,
                   help="results file: a name in benchmarks/results or a path (default two_tower_quality[_<customers>].json)")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    variants = dict(parse_variant(v) for v in (args.variant or list(VARIANTS)))
    configs = {name: config_for(ov, args.threads) for name, ov in variants.items()}
    with Run(isolate=True) as run:
        t_start = time.perf_counter()
        per_seed = []
        for seed in seeds:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                generate(tmp, n_customers=args.customers, seed=seed, fmt="parquet")
                train_df, val_df, test_df, articles = retrieval_frames(Path(tmp))
            history = pl.concat([train_df, val_df])
            record = {
                "seed": seed,
                "rows": {"train": train_df.height, "validation": val_df.height, "test": test_df.height},
                "articles": articles.height,
                "data_seconds": round(time.perf_counter() - t0, 1),
                "variants": {},
            }
            print(f"\nseed {seed}: rows train {train_df.height:,}  validation {val_df.height:,}  "
                  f"test {test_df.height:,}  articles {articles.height:,}", flush=True)
            for name, cfg in configs.items():
                cfg = replace(cfg, seed=seed)
                r = train(train_df, val_df, articles, cfg)
                test = evaluate(r.model, test_df, history, articles, cfg)
                r.metrics["popularity_prior_window"] = window_popularity(val_df, train_df, articles, cfg)
                test["popularity_prior_window"] = window_popularity(test_df, history, articles, cfg)
                record["variants"][name] = {
                    "seconds": round(r.seconds, 1),
                    "best_epoch": r.best_epoch,
                    "epochs_run": len(r.history),
                    "validation": r.metrics,
                    "test": test,
                    "val_top_100_by_epoch": [h.metrics.get("top_100_accuracy") for h in r.history],
                }
                line = "  ".join(
                    f"{split[:4]} {m} {res['two_tower'][m]:.3f}/{res['popularity'][m]:.3f}"
                    for split, res in (("validation", r.metrics), ("test", test))
                    for m in ("top_100_accuracy", "recall_at_100")
                )
                print(f"  {name:12s} {r.seconds:5.1f} s  best epoch {r.best_epoch:2d}/{len(r.history):2d}  "
                      f"model/popularity: {line}", flush=True)
            per_seed.append(record)
        seconds = time.perf_counter() - t_start
    summary = summarise(per_seed)
    print_summary(summary)
    out = {
        "customers": args.customers,
        "seeds": seeds,
        "variants": {
            name: {
                "overrides": variants[name],
                "query_features": format_feature_specs(cfg.query_features),
                "item_features": format_feature_specs(cfg.item_features),
                "num_epochs": cfg.num_epochs,
                "patience": cfg.patience,
                "learning_rate": cfg.learning_rate,
                "popularity_prior_days": cfg.popularity_prior_days,
            }
            for name, cfg in configs.items()
        },
        "summary": summary,
        "per_seed": per_seed,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }
    name = args.out or ("two_tower_quality.json" if args.customers == 1000 else f"two_tower_quality_{args.customers}.json")
    path = write_result(Path(name) if Path(name).parent != Path(".") else RESULTS / name, out, run)
    print(f"\nwritten to {path}")
    print(describe(run))


if __name__ == "__main__":
    main()
