"""Time, rows and peak memory of the synthetic generator (hmrec.data.synthetic.generate).

Usage:
    python benchmarks/bench_generate.py --size SMALL
    python benchmarks/bench_generate.py --size FULL --out /tmp/hmrec_full_data   # keep the files
    python benchmarks/bench_generate.py --results /tmp/generate_check.json       # figures elsewhere

Sizes are the project's CUSTOMER_DATA_SIZE values (SMALL 1,000 / MEDIUM 5,000 /
LARGE 50,000 customers, FULL 1,371,980). Without --out the files go to a temporary
folder that is removed afterwards. Figures are printed and written to
benchmarks/results/generate_<size>.json (or --results), with the machine block
(benchmarks/machine.py) saying where and under what load they were taken.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from machine import RESULTS, Run, describe, peak_rss_mb, write_result

from hmrec.config import FULL_CUSTOMERS, CustomerDataSize
from hmrec.data.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="SMALL", choices=[s.value for s in CustomerDataSize])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fmt", default="csv", choices=["csv", "parquet"])
    parser.add_argument("--out", type=Path, default=None, help="keep the generated files here")
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/generate_<size>.json)")
    args = parser.parse_args()

    n_customers = CustomerDataSize(args.size).n_customers or FULL_CUSTOMERS
    out = args.out or Path(tempfile.mkdtemp(prefix="hmrec_bench_gen_"))
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] > 30:
            last[0] = now
            print(f"  {stage}: {done}/{total}  rss={psutil.Process().memory_info().rss / 2**20:.0f} MB",
                  file=sys.stderr, flush=True)

    with Run(isolate=True) as run:
        cpu0 = time.process_time()
        summary = generate(out, n_customers=n_customers, seed=args.seed, fmt=args.fmt, progress=progress)
        cpu = time.process_time() - cpu0
    sizes = {k: p.stat().st_size for k, p in summary.paths.items()}
    result = {
        "benchmark": "generate",
        "size": args.size,
        "n_customers": summary.n_customers,
        "n_articles": summary.n_articles,
        "seed": args.seed,
        "fmt": args.fmt,
        "rows": summary.rows,
        "bytes": sizes,
        "seconds": round(summary.seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "rows_per_second": round(summary.rows["transactions"] / summary.seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "out_dir": str(out) if args.out else None,
    }
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    path = write_result(args.results or RESULTS / f"generate_{args.size}.json", result, run)
    print(f"generate {args.size}: {summary.rows['transactions']:,} transactions, "
          f"{summary.rows['customers']:,} customers, {summary.rows['articles']:,} articles "
          f"in {summary.seconds:.1f} s (cpu {cpu:.1f} s), peak RSS {result['peak_rss_mb']:.0f} MB")
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
    print(describe(run))


if __name__ == "__main__":
    main()
