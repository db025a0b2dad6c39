"""Time and peak memory of the ranking step: dataset building, CatBoost fit, re-ranking.

Usage:
    python benchmarks/bench_ranking.py                              # generate SMALL data, then run
    python benchmarks/bench_ranking.py --size MEDIUM
    python benchmarks/bench_ranking.py --data-dir /tmp/hmrec_full_data --label FULL
    python benchmarks/bench_ranking.py --results /tmp/ranking_check.json    # figures elsewhere

The two-tower model is replaced by random 16-d embeddings searched exactly with FAISS
(what the real index does, at the same cost), so this measures the ranking step alone
— its quality figures mean nothing and are not printed; see the README's ranking table
for quality. Candidates are the blended lists the pipeline ranks (two-tower top-k +
last week's best sellers + the customer's purchases of the last 8 weeks). Layout and
every RANKING_* setting (weeks, thinning, samples, CatBoost parameters) come from
Settings, as in `hmrec train ranking`; flags override the sampling ones.
Generation (when needed, benchmarks/datasets.py, Parquet) and the machine block's
yardstick run in child processes. Figures are printed and written to
benchmarks/results/ranking_<label>.json (or --results), with the machine block
(benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import psutil
from datasets import generate
from machine import RESULTS, Run, describe, peak_rss_mb, write_result


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


class RandomTowers:
    """Stand-in retrieval with the real one's cost: embeddings + exact FAISS inner product."""

    def __init__(self, customer_ids: pl.Series, article_ids: pl.Series, dim: int = 16, seed: int = 0) -> None:
        import faiss

        rng = np.random.default_rng(seed)
        self.customers = pl.DataFrame({"customer_id": customer_ids}).with_row_index("_pos")
        self.articles = article_ids.to_numpy()
        self.article_pos = pl.DataFrame({"article_id": article_ids}).with_row_index("_apos")
        self.q = rng.normal(size=(customer_ids.len(), dim)).astype(np.float32)
        self.v = rng.normal(size=(article_ids.len(), dim)).astype(np.float32)
        self.index = faiss.IndexFlatIP(dim)
        self.index.add(self.v)

    def _rows(self, customer_ids: list[str]) -> np.ndarray:
        pos = pl.DataFrame({"customer_id": pl.Series(customer_ids, dtype=pl.String)}).join(
            self.customers, on="customer_id", how="left", maintain_order="left")["_pos"]
        return pos.fill_null(0).to_numpy()

    def frame(self, customer_ids: list[str], as_of: date, k: int) -> pl.DataFrame:
        scores, idx = self.index.search(self.q[self._rows(customer_ids)], k)
        return pl.DataFrame({
            "customer_id": pl.Series(np.repeat(np.asarray(customer_ids, dtype=object), k), dtype=pl.String),
            "article_id": pl.Series(self.articles[idx.ravel()], dtype=pl.String),
            "retrieval_score": scores.ravel(),
        })

    def __call__(self, customer_ids: list[str], as_of: date, k: int) -> dict:
        f = self.frame(customer_ids, as_of, k)
        out: dict = {}
        for c, a, s in f.iter_rows():
            out.setdefault(c, []).append((a, s))
        return out

    def score_pairs(self, customer_ids: list[str], article_ids: list[str], as_of: date) -> np.ndarray:
        rows = self._rows(customer_ids)
        cols = pl.DataFrame({"article_id": pl.Series(article_ids, dtype=pl.String)}).join(
            self.article_pos, on="article_id", how="left", maintain_order="left")["_apos"].fill_null(0).to_numpy()
        return np.einsum("ij,ij->i", self.q[rows], self.v[cols])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="SMALL", choices=["SMALL", "MEDIUM", "LARGE", "FULL"])
    parser.add_argument("--data-dir", type=Path, default=None, help="existing raw files (no generation)")
    parser.add_argument("--label", default=None, help="results name (default: the size)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--k", type=int, default=100, help="two-tower candidates per customer")
    parser.add_argument("--negatives-per-customer", type=int, default=None,
                        help="thin training negatives (default: RANKING_NEGATIVES_PER_CUSTOMER)")
    parser.add_argument("--max-train-customers", type=int, default=None,
                        help="buyers sampled per training week (default: RANKING_MAX_TRAIN_CUSTOMERS)")
    parser.add_argument("--max-eval-customers", type=int, default=None,
                        help="evaluation sample (default: RANKING_MAX_EVAL_CUSTOMERS)")
    parser.add_argument("--train-weeks", type=int, default=None, help="default: RANKING_TRAIN_WEEKS")
    parser.add_argument("--no-random-variant", action="store_true",
                        help="skip the random-negative variant (default: RANKING_COMPARE_RANDOM_NEGATIVES)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/ranking_<label>.json)")
    args = parser.parse_args()
    label = args.label or args.size

    from hmrec.config import Settings
    from hmrec.ranking.config import RankingConfig

    settings = Settings()
    neg_per_customer = (args.negatives_per_customer if args.negatives_per_customer is not None
                        else settings.RANKING_NEGATIVES_PER_CUSTOMER) or None
    max_train = args.max_train_customers if args.max_train_customers is not None else settings.RANKING_MAX_TRAIN_CUSTOMERS
    max_eval = args.max_eval_customers if args.max_eval_customers is not None else settings.RANKING_MAX_EVAL_CUSTOMERS
    train_weeks = args.train_weeks or settings.RANKING_TRAIN_WEEKS
    compare_random = settings.RANKING_COMPARE_RANDOM_NEGATIVES and not args.no_random_variant
    # the comparison models at any size (compare_max_rows=None): the benchmark measures them
    config = RankingConfig.from_settings(
        settings, k=args.k, negatives_per_customer=neg_per_customer, max_train_customers=max_train,
        max_eval_customers=max_eval, compare_random_negatives=compare_random, compare_max_rows=None, seed=args.seed)

    from hmrec.data import load_raw
    from hmrec.features import build_articles, build_customers
    from hmrec.ranking import BlendedCandidates, default_windows, train_ranking

    work = Path(tempfile.mkdtemp(prefix="hmrec_bench_ranking_"))
    try:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = work / "data"
            gen_s = generate(data_dir, args.size, args.seed, fmt="parquet")
            print(f"generated {args.size} data in {gen_s:.1f} s", flush=True)

        with Run(isolate=True) as run:
            t0 = time.perf_counter()
            raw = load_raw(data_dir)
            tx = raw.transactions.select("t_dat", "customer_id", "article_id")
            customers = build_customers(raw.customers)
            articles = build_articles(raw.articles)
            del raw
            load_s = time.perf_counter() - t0
            rss_loaded = _rss_mb()
            print(f"loaded {tx.height:,} transactions in {load_s:.1f} s (RSS {rss_loaded:.0f} MB)", flush=True)

            towers = RandomTowers(customers["customer_id"], articles["article_id"], seed=args.seed)
            candidates = BlendedCandidates(towers, towers.score_pairs, tx)
            last = tx["t_dat"].max()
            validation_start = last - timedelta(days=13)  # the week before the test week
            train_windows, validation_window, retrieval_end = default_windows(validation_start, train_weeks)

            phases: list[tuple[str, float, float]] = []
            t1 = time.perf_counter()
            cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # user + system, the ranking step

            def progress(message: str) -> None:
                phases.append((message, time.perf_counter() - t1, peak_rss_mb()))
                print(f"  [{time.perf_counter() - t1:7.1f} s, peak {peak_rss_mb():7.0f} MB] {message}", flush=True)

            result = train_ranking(
                tx, articles, customers, train_windows, validation_window, candidates, towers.score_pairs, config,
                retrieval_train_end=retrieval_end, progress=progress,
            )
            ranking_s = time.perf_counter() - t1
        names = {"building retrieval": "train_rows", "building validation": "validation_rows",
                 "fitting CatBoost on": "fit", "fitting CatBoostRanker": "fit_yetirank",
                 "fitting the random": "random_variant_rows_and_fit", "re-ranking": "rerank_validation"}
        steps = {}
        for (name, start, _), (_, end, _) in zip(phases, phases[1:]):
            key = next((v for k, v in names.items() if name.startswith(k)), name)
            steps[key] = round(end - start, 2)
        rows = result.report["rows"]
        out = {
            "label": label,
            "data_dir": str(data_dir),
            "transactions": tx.height,
            "settings": {"k": args.k, "negatives_per_customer": neg_per_customer,
                         "max_train_customers": max_train, "max_eval_customers": max_eval,
                         "compare_random_negatives": compare_random,
                         "compare_yetirank": settings.RANKING_COMPARE_YETIRANK, "n_popular": candidates.n_popular,
                         "repurchase_days": candidates.repurchase_days, "train_weeks": train_weeks,
                         "model": {k: v for k, v in config.model_params.items() if k != "thread_count"}},
            "rows": rows,
            "evaluated_customers": result.report["metrics"]["catboost"]["n_customers"],
            "load_seconds": round(load_s, 2),
            "ranking_seconds": round(ranking_s, 2),
            "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0, 1),
            "phase_seconds": steps,
            "rss_after_load_mb": round(rss_loaded),
            "peak_rss_mb": round(peak_rss_mb()),
            "catboost_best_iteration": result.report["best_iteration"],
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        }
        print(json.dumps(out, indent=2))
        path = write_result(args.results or RESULTS / f"ranking_{label}.json", out, run)
        print(f"written to {path}")
        print(describe(run))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
