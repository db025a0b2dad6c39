"""Time and peak memory of the feature pipeline plus the `retrieval` view's training data.

Usage:
    python benchmarks/bench_features.py                         # generate SMALL data, then run
    python benchmarks/bench_features.py --size MEDIUM
    python benchmarks/bench_features.py --data-dir /tmp/hmrec_full_data --label FULL
    python benchmarks/bench_features.py --results /tmp/features_check.json   # figures elsewhere

Target (issue 3) at FULL (31.8M transactions) on 2 cores / 24 GB: pipeline plus
retrieval training data in under 10 minutes and under 8 GB peak RSS. Generation (when
needed, benchmarks/datasets.py, CSV) and the machine block's yardstick run in child
processes, so the peak printed is the pipeline's own. The store goes to a temporary
folder (removed afterwards unless --keep). Figures are printed and written to
benchmarks/results/features_<label>.json (or --results), with the machine block
(benchmarks/machine.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil
from datasets import generate
from machine import RESULTS, Run, describe, peak_rss_mb, write_result


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class RssSampler:
    """Samples this process's RSS every `interval` s, so the peak of each stage can be told apart
    (ru_maxrss only gives the peak so far). Samples are (seconds since start, MB)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, self._proc.memory_info().rss / 2**20))
            self._stop.wait(self.interval)

    def start(self) -> "RssSampler":
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> float:
        pad = self.interval  # a stage shorter than one interval still gets its nearest sample
        inside = [mb for t, mb in self.samples if start - pad <= t <= end + pad]
        return round(max(inside), 0) if inside else 0.0


def _stage_peaks(sampler: RssSampler, stage_seconds: dict[str, float], offset: float = 0.0) -> dict[str, float]:
    """Peak sampled RSS (MB) inside each stage; stages are consecutive laps from `offset`."""
    out, t = {}, offset
    for name, sec in stage_seconds.items():
        if name == "total":
            continue
        out[name] = sampler.peak_between(t, t + sec)
        t += sec
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="SMALL", choices=["SMALL", "MEDIUM", "LARGE", "FULL"])
    parser.add_argument("--data-dir", type=Path, default=None, help="existing raw files (no generation)")
    parser.add_argument("--label", default=None, help="results name (default: the size)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", type=Path, default=None, help="keep the store under this home dir")
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/features_<label>.json)")
    args = parser.parse_args()
    label = args.label or args.size

    from hmrec.config import Settings
    from hmrec.features.views import RETRIEVAL_VIEW
    from hmrec.pipelines.features import run_feature_pipeline
    from hmrec.store import FeatureStore

    work = Path(tempfile.mkdtemp(prefix="hmrec_bench_features_"))
    try:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = work / "data"
            gen_s = generate(data_dir, args.size, args.seed, fmt="csv")
            print(f"generated {args.size} data in {gen_s:.1f} s")
        home = args.keep or (work / "home")
        # FULL: no sampling; the bench measures exactly the data it is given.
        settings = Settings(HOME_DIR=home, DATA_DIR=data_dir, CUSTOMER_DATA_SIZE="FULL", SEED=args.seed)

        def progress(task: str, done: float, total: float | None = None) -> None:
            print(f"  [{time.perf_counter() - t0:7.1f} s, peak {peak_rss_mb():7.0f} MB] {task} {done}/{total}",
                  flush=True)

        with Run(isolate=True) as run:
            sampler = RssSampler().start()
            t0 = time.perf_counter()
            summary = run_feature_pipeline(settings, progress=progress, write_report=False)
            pipeline_s = time.perf_counter() - t0
            pipeline_peak = peak_rss_mb()

            t1 = time.perf_counter()
            fv = FeatureStore(settings.store_dir).get_feature_view(RETRIEVAL_VIEW, 1)
            td = fv.training_data()
            training_s = time.perf_counter() - t1
            rows = td.height
            del td
            total_s = time.perf_counter() - t0
            sampler.stop()
        offset = t0 - sampler._t0
        stage_peaks = _stage_peaks(sampler, summary.seconds, offset)
        stage_peaks["training data"] = sampler.peak_between(offset + pipeline_s, offset + total_s)

        result = {
            "label": label,
            "data_dir": str(data_dir),
            "rows": summary.rows,
            "training_rows": rows,
            "pipeline_seconds": round(pipeline_s, 2),
            "pipeline_stage_seconds": summary.seconds,
            "stage_peak_rss_mb": stage_peaks,
            "training_data_seconds": round(training_s, 2),
            "total_seconds": round(total_s, 2),
            "cpu_seconds": round(_cpu_s(), 1),
            "pipeline_peak_rss_mb": round(pipeline_peak),
            "peak_rss_mb": round(peak_rss_mb()),
            "target": "FULL: < 600 s and < 8192 MB",
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        }
        print(json.dumps(result, indent=2))
        path = write_result(args.results or RESULTS / f"features_{label}.json", result, run)
        print(f"written to {path}")
        print(describe(run))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
