"""Point-in-time join through the feature store: seconds and peak memory.

Label rows (transactions: integer customer id, purchase day over two years, in date
order like the raw file) are joined as of their day against a time-versioned
customer feature table (customer id, as-of day, 3 features). Both are feature groups
in a fresh store; the join is `labels.select(...).join(features.select(...), on=...)`.

For comparison (string ids): Polars 2.2 s / 1.5 GB and DuckDB
2.6 s / 1.5 GB at 1M label rows; 30-36 s / 10.8 GB at 30M; Feast 25 s / 9.5 GB at 1M.

Usage:
    python benchmarks/bench_pit_join.py                   # 1M label rows
    python benchmarks/bench_pit_join.py --sizes 1000000 30000000
    python benchmarks/bench_pit_join.py --feature-rows 5000000
    python benchmarks/bench_pit_join.py --sizes 100000 --results /tmp/pit_check.json

Each size runs in its own process, so each peak RSS is that size's alone (each run
also records the 1-minute load average at its start). Figures are printed and written
to benchmarks/results/bench_pit_join.json (or --results), with the machine block
(benchmarks/machine.py) around all the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from machine import RESULTS, Run, describe, write_result

N_CUSTOMERS = 1_371_980
N_DAYS = 734  # 2018-09-20 .. 2020-09-22


class PeakRss:
    """Samples this process's RSS every 20 ms; `.peak_mb` is the highest seen."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def worker(n_labels: int, n_features: int, seed: int) -> dict:
    import datetime as dt

    import numpy as np
    import polars as pl

    from hmrec.store import FeatureStore

    rng = np.random.default_rng(seed)
    start = dt.date(2018, 9, 20)
    labels = pl.DataFrame(
        {
            "tx_id": np.arange(n_labels, dtype=np.int64),
            "customer_id": rng.integers(0, N_CUSTOMERS, n_labels, dtype=np.int32),
            "t_dat": np.sort(rng.integers(0, N_DAYS, n_labels)).astype(np.int32),
            "price": rng.random(n_labels, dtype=np.float32) * 0.1,
        }
    ).with_columns((pl.lit(start) + pl.duration(days=pl.col("t_dat"))).alias("t_dat"))
    feats = (
        pl.DataFrame(
            {
                "customer_id": rng.integers(0, N_CUSTOMERS, n_features, dtype=np.int32),
                "as_of": rng.integers(0, N_DAYS, n_features).astype(np.int32),
                "n_purchases": rng.integers(0, 500, n_features, dtype=np.int32),
                "days_since_last": rng.integers(0, 700, n_features, dtype=np.int32),
                "avg_price": rng.random(n_features, dtype=np.float32),
            }
        )
        .with_columns((pl.lit(start) + pl.duration(days=pl.col("as_of"))).alias("as_of"))
        .unique(["customer_id", "as_of"])
    )
    # CPU seconds are reported too: on a shared machine wall time depends on the load.
    out: dict = {"label_rows": n_labels, "feature_rows": feats.height,
                 "load_average_1m": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench_pit_") as tmp:
        fs = FeatureStore(Path(tmp))
        tx = fs.get_or_create_feature_group("tx", primary_key=["tx_id"], event_time="t_dat")
        cf = fs.get_or_create_feature_group("cust", primary_key=["customer_id", "as_of"], event_time="as_of")
        t0, c0 = time.perf_counter(), time.process_time()
        tx.insert(labels)
        cf.insert(feats)
        out["insert_seconds"] = round(time.perf_counter() - t0, 2)
        out["insert_cpu_seconds"] = round(time.process_time() - c0, 2)
        del labels, feats
        query = tx.select(["tx_id", "customer_id", "t_dat", "price"]).join(
            cf.select(["n_purchases", "days_since_last", "avg_price"]), on="customer_id"
        )
        with PeakRss() as rss:
            t0, c0 = time.perf_counter(), time.process_time()
            joined = query.read()
            out["join_seconds"] = round(time.perf_counter() - t0, 2)
            out["join_cpu_seconds"] = round(time.process_time() - c0, 2)
        out["join_peak_rss_mb"] = round(rss.peak_mb)
        out["rows_out"] = joined.height
        out["matched_share"] = round(1 - joined["n_purchases"].null_count() / max(joined.height, 1), 3)
        assert joined.height == n_labels
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000], help="label rows per run")
    parser.add_argument("--feature-rows", type=int, default=None, help="feature rows (default: = label rows)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/bench_pit_join.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        n = args.sizes[0]
        print(json.dumps(worker(n, args.feature_rows or n, args.seed)))
        return

    runs = []
    with Run(isolate=True) as run:
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--worker", "--sizes", str(n), "--seed", str(args.seed)]
            if args.feature_rows:
                cmd += ["--feature-rows", str(args.feature_rows)]
            proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.append(result)
            print(
                f"PIT join {result['label_rows']:>11,} labels x {result['feature_rows']:>11,} feature rows: "
                f"{result['join_seconds']:6.2f} s ({result['join_cpu_seconds']:.1f} s CPU), "
                f"peak RSS {result['join_peak_rss_mb']:>6,} MB "
                f"(insert both groups {result['insert_seconds']:.1f} s; {result['matched_share']:.0%} matched; "
                f"load {result['load_average_1m']:.1f})"
            )
    payload = {
        "benchmark": "pit_join",
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "runs": runs,
    }
    path = write_result(args.results or RESULTS / "bench_pit_join.json", payload, run)
    print(f"written {path}")
    print(describe(run))


if __name__ == "__main__":
    main()
