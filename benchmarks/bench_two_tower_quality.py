"""Two-tower retrieval quality on generated data, next to popularity and random baselines.

Usage:
    python benchmarks/bench_two_tower_quality.py                    # SMALL (1,000 customers)
    python benchmarks/bench_two_tower_quality.py --customers 5000 --fast-matmul

Generates a synthetic dataset (hmrec.data.synthetic), builds the ``retrieval`` view's
columns with plain Polars joins (the same columns the feature store's view serves),
splits by time (last 7 days test, the 7 before validation, the rest training; DESIGN.md
section 4), trains with the reference settings (hmrec.config.Settings defaults), and
prints validation and test metrics for the model, global popularity (last training
week) and random. With --fast-matmul it also trains the bf16-logits variant, to check
that lower precision costs no retrieval quality. Results go to
benchmarks/results/two_tower_quality[_<customers>].json.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl

from hmrec.config import Settings
from hmrec.data.loader import load_raw
from hmrec.data.synthetic import generate
from hmrec.features.customers import age_group_expr
from hmrec.features.on_demand import month_cos, month_sin
from hmrec.retrieval import TwoTowerConfig, evaluate, train

RESULTS = Path(__file__).resolve().parent / "results"
SHOW = ("top_10_accuracy", "top_100_accuracy", "recall_at_100", "ndcg_at_12", "mrr")


def retrieval_frames(data_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--fast-matmul", action="store_true", help="also train the bf16-logits variant")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, n_customers=args.customers, seed=args.seed, fmt="parquet")
        train_df, val_df, test_df, articles = retrieval_frames(Path(tmp))
    gen_s = time.perf_counter() - t0
    base = TwoTowerConfig.from_settings(Settings(), num_threads=args.threads)
    if args.epochs:
        base = replace(base, num_epochs=args.epochs)
    variants = {"fp32": base}
    if args.fast_matmul:
        variants["bf16"] = replace(base, fast_matmul=True)
    out = {
        "customers": args.customers,
        "rows": {"train": train_df.height, "validation": val_df.height, "test": test_df.height},
        "articles": articles.height,
        "data_seconds": round(gen_s, 1),
        "runs": {},
    }
    print(f"rows: train {train_df.height:,}  validation {val_df.height:,}  test {test_df.height:,}  articles {articles.height:,}")
    for name, cfg in variants.items():
        r = train(train_df, val_df, articles, cfg)
        test = evaluate(r.model, test_df, pl.concat([train_df, val_df]), articles, cfg)
        out["runs"][name] = {
            "seconds": round(r.seconds, 1),
            "best_epoch": r.best_epoch,
            "validation": r.metrics,
            "test": test,
            "history": [
                {k: getattr(h, k) for k in ("epoch", "train_retrieval_loss", "val_retrieval_loss", "samples_per_second")}
                | {"val_top_100_accuracy": h.metrics.get("top_100_accuracy")}
                for h in r.history
            ],
        }
        print(f"\n[{name}] {r.seconds:.1f} s, best epoch {r.best_epoch}")
        for h in r.history:
            print(
                f"  epoch {h.epoch:2d}  train loss {h.train_retrieval_loss:.4f}  val loss {h.val_retrieval_loss:.4f}  "
                f"val top-100 {h.metrics.get('top_100_accuracy', float('nan')):.4f}  {h.samples_per_second:,.0f} samples/s"
            )
        for split, metrics in (("validation", r.metrics), ("test", test)):
            print(f"  {split:10s} " + "  ".join(f"{m:>16s}" for m in SHOW))
            for system, vals in metrics.items():
                print(f"  {system:10s} " + "  ".join(f"{vals[m]:16.4f}" for m in SHOW))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "two_tower_quality.json" if args.customers == 1000 else f"two_tower_quality_{args.customers}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2))
    print(f"\nwritten to {RESULTS / name}")


if __name__ == "__main__":
    main()
