"""Time and peak memory of loading + validating a raw data dir (hmrec.data.load_raw).

Usage:
    python benchmarks/bench_load.py                      # generate SMALL data, then load it
    python benchmarks/bench_load.py --size FULL          # generate FULL (slow, ~GBs on disk)
    python benchmarks/bench_load.py --data-dir DIR --label kaggle   # load existing files
    python benchmarks/bench_load.py --results /tmp/load_check.json  # figures elsewhere

Generation (when needed, benchmarks/datasets.py, CSV) runs in a child process, and so
does the machine block's yardstick, so the peak RSS printed is that of loading alone.
Figures are printed and written to benchmarks/results/load_<label>.json (or --results),
with the machine block (benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil
from datasets import generate
from machine import RESULTS, Run, describe, peak_rss_mb, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="existing raw files to load")
    parser.add_argument("--size", default="SMALL", help="SMALL/MEDIUM/LARGE/FULL when generating")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--label", default=None, help="results name (default: the size)")
    parser.add_argument("--drop-unknown", action="store_true")
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/load_<label>.json)")
    args = parser.parse_args()
    label = args.label or args.size.upper()

    tmp = None
    gen_seconds = None
    data_dir = args.data_dir
    if data_dir is None:
        try:
            import hmrec.data.synthetic  # noqa: F401
        except ModuleNotFoundError:
            sys.exit("hmrec.data.synthetic is not available; pass --data-dir DIR")
        tmp = tempfile.TemporaryDirectory(prefix="hmrec_bench_load_")
        data_dir = Path(tmp.name)
        gen_seconds = generate(data_dir, args.size, args.seed, fmt="csv")

    import polars as pl

    from hmrec.data import load_raw

    base_rss = psutil.Process().memory_info().rss / 2**20
    with Run(isolate=True) as run:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        raw = load_raw(data_dir, drop_unknown_references=args.drop_unknown)
        seconds = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    peak = peak_rss_mb()
    frames_mb = sum(
        df.estimated_size("mb") for df in (raw.articles, raw.customers, raw.transactions)
    )
    file_mb = sum(Path(p).stat().st_size for p in raw.report.files.values()) / 2**20

    result = {
        "benchmark": "load",
        "label": label,
        "data_dir": str(args.data_dir) if args.data_dir else f"generated {args.size.upper()}",
        "rows": raw.report.rows,
        "file_mb": round(file_mb, 1),
        "frames_mb": round(frames_mb, 1),
        "load_seconds": round(seconds, 2),
        "load_cpu_seconds": round(cpu_seconds, 2),
        "transactions_per_second": round(raw.report.rows["transactions"] / seconds),
        "rss_after_imports_mb": round(base_rss, 1),
        "peak_rss_mb": round(peak, 1),
        "generate_seconds": None if gen_seconds is None else round(gen_seconds, 2),
        "report": raw.report.to_dict(),
        "polars": pl.__version__,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
    for key in (
        "rows",
        "file_mb",
        "frames_mb",
        "load_seconds",
        "load_cpu_seconds",
        "transactions_per_second",
        "rss_after_imports_mb",
        "peak_rss_mb",
        "generate_seconds",
    ):
        print(f"{key:>24}: {result[key]}")
    out = write_result(args.results or RESULTS / f"load_{label}.json", result, run)
    print(f"wrote {out}")
    print(describe(run))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
