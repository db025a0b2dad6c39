"""Time and peak memory of loading + validating a raw data dir (hmrec.data.load_raw).

Usage:
    python benchmarks/bench_load.py                      # generate SMALL data, then load it
    python benchmarks/bench_load.py --size FULL          # generate FULL (slow, ~GBs on disk)
    python benchmarks/bench_load.py --data-dir DIR --label kaggle   # load existing files

Generation (when needed) runs in a child process, so the peak RSS printed is that of
loading alone. Figures are printed and written to benchmarks/results/load_<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _generate(out_dir: Path, size: str, seed: int) -> float:
    """Generate a dataset of ``size`` in a child process; returns its wall seconds."""
    code = (
        "import sys\n"
        "from hmrec.config import CustomerDataSize, FULL_CUSTOMERS\n"
        "from hmrec.data.synthetic import generate\n"
        "size = CustomerDataSize(sys.argv[2])\n"
        "n = size.n_customers or FULL_CUSTOMERS\n"
        "print(generate(sys.argv[1], n_customers=n, seed=int(sys.argv[3]), fmt='csv'))\n"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(out_dir), size, str(seed)], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="existing raw files to load")
    parser.add_argument("--size", default="SMALL", help="SMALL/MEDIUM/LARGE/FULL when generating")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--label", default=None, help="results name (default: the size)")
    parser.add_argument("--drop-unknown", action="store_true")
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
        gen_seconds = _generate(data_dir, args.size.upper(), args.seed)

    import polars as pl

    from hmrec.data import load_raw

    base_rss = psutil.Process().memory_info().rss / 2**20
    load_before = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    raw = load_raw(data_dir, drop_unknown_references=args.drop_unknown)
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    peak = _peak_rss_mb()
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
        # other jobs on the machine inflate wall time; the 1-minute load average tells how much
        "loadavg_1min_before": round(load_before, 2),
        "transactions_per_second": round(raw.report.rows["transactions"] / seconds),
        "rss_after_imports_mb": round(base_rss, 1),
        "peak_rss_mb": round(peak, 1),
        "generate_seconds": None if gen_seconds is None else round(gen_seconds, 2),
        "report": raw.report.to_dict(),
        "machine": {
            "cpus": psutil.cpu_count(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "polars": pl.__version__,
        },
    }
    for key in (
        "rows",
        "file_mb",
        "frames_mb",
        "load_seconds",
        "load_cpu_seconds",
        "loadavg_1min_before",
        "transactions_per_second",
        "rss_after_imports_mb",
        "peak_rss_mb",
        "generate_seconds",
    ):
        print(f"{key:>24}: {result[key]}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"load_{label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
