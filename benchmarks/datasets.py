"""Generated data for the benchmarks: one :func:`generate` that every script uses.

The data is written by ``hmrec.data.synthetic.generate`` in a child process, so the
generator's memory never shows in the peak RSS of the work a benchmark measures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SIZES = ("SMALL", "MEDIUM", "LARGE", "FULL")

_CHILD = (
    "import sys\n"
    "from hmrec.config import CustomerDataSize, FULL_CUSTOMERS\n"
    "from hmrec.data.synthetic import generate\n"
    "n = CustomerDataSize(sys.argv[2]).n_customers or FULL_CUSTOMERS\n"
    "generate(sys.argv[1], n_customers=n, seed=int(sys.argv[3]), fmt=sys.argv[4])\n"
)


def generate(out_dir: str | Path, size: str, seed: int, fmt: str = "csv") -> float:
    """Generate a synthetic dataset of ``size`` (SMALL, MEDIUM, LARGE or FULL, any case) into
    ``out_dir`` in a child process, as ``fmt`` ("csv", the Kaggle files, or "parquet").
    Returns the wall seconds it took."""
    size = size.upper()
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _CHILD, str(out_dir), size, str(seed), fmt], check=True)
    return time.perf_counter() - start
