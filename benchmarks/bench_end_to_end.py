"""The whole pipeline end to end (`hmrec run`'s code path): time, CPU and peak memory per step.

Usage:
    python benchmarks/bench_end_to_end.py --size SMALL                  # generates into the home
    python benchmarks/bench_end_to_end.py --size MEDIUM
    flock /tmp/hmrec_bench.lock python benchmarks/bench_end_to_end.py --data-dir /tmp/hmrec_full_data
    python benchmarks/bench_end_to_end.py --data-dir /tmp/hmrec_full_data --home H --from evaluate
    python benchmarks/bench_end_to_end.py --size SMALL --results /tmp/e2e_check.json   # figures elsewhere

It calls ``hmrec.pipelines.run.run_all`` (what ``hmrec run`` calls) with a step hook, so
every step is measured where it runs, in this process:

* wall and CPU seconds (user + system, this process and its children);
* peak RSS of the step, exactly: the kernel's high-water mark (VmHWM) is reset at each
  step's start through /proc/self/clear_refs, so each step shows its own peak rather
  than the run's; a 0.2 s sampling thread adds children's RSS (none unless training
  spawns workers) and serves as the fallback where clear_refs is not writable.

``--data-dir`` without ``--size`` means FULL (every customer of the files). The home is
a fresh folder under /tmp (kept afterwards, so ``--from STEP`` can re-measure the later
steps on the stores a full run left). Sub-step seconds are copied from the reports the
steps write (features.json, retrieval.json, ranking.json, evaluate.json). Results are
printed and written to benchmarks/results/end_to_end_<label>.json (or --results), also
when a step fails, with the machine block (benchmarks/machine.py: load average and
yardstick before and after the whole run; the yardstick runs in a child process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psutil
from machine import RESULTS, Run, describe, peak_rss_mb, write_result

CLEAR_REFS = Path("/proc/self/clear_refs")


def _hwm_kib() -> int | None:
    """The process's peak RSS since the last reset (VmHWM), in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class Meter:
    """Per-step wall, CPU and peak RSS; used as run_all's step hook."""

    def __init__(self, interval: float = 0.2) -> None:
        self.proc = psutil.Process()
        self.interval = interval
        self.steps: dict[str, dict] = {}
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _rss_total(self) -> int:
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = self._rss_total()
            except psutil.Error:
                continue
            with self._lock:
                self._peak = max(self._peak, rss)

    def _cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        exact = _reset_hwm()
        with self._lock:
            self._peak = self._rss_total()
        start_rss = self.proc.memory_info().rss
        load0 = os.getloadavg()
        cpu0, t0 = self._cpu(), time.perf_counter()
        print(f"[bench] step {name} starts (rss {start_rss / 2**30:.2f} GB, load {load0[0]:.2f})",
              file=sys.stderr, flush=True)
        ok = False
        try:
            yield
            ok = True
        finally:
            wall, cpu = time.perf_counter() - t0, self._cpu() - cpu0
            with self._lock:
                sampled = max(self._peak, self._rss_total())
            hwm = _hwm_kib() if exact else None
            peak = max(sampled, hwm * 1024) if hwm is not None else sampled
            self.steps[name] = {
                "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                "peak_rss_gb": round(peak / 2**30, 2), "sampled_peak_rss_gb": round(sampled / 2**30, 2),
                "peak_exact": hwm is not None, "rss_at_start_gb": round(start_rss / 2**30, 2),
                "loadavg_1m_start": round(load0[0], 2), "loadavg_1m_end": round(os.getloadavg()[0], 2),
                "ok": ok,
            }
            print(f"[bench] step {name} {'done' if ok else 'FAILED'}: {wall:.1f} s wall, {cpu:.1f} CPU-s, "
                  f"peak {peak / 2**30:.2f} GB", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _read_report(reports: Path, step: str) -> dict | None:
    path = reports / f"{step}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _sub_steps(reports: Path) -> dict:
    """Seconds inside each step, from the reports the steps themselves write."""
    out: dict = {}
    features = _read_report(reports, "features")
    if features:
        out["features"] = features.get("seconds")
        out["features_rows"] = features.get("rows")
    retrieval = _read_report(reports, "retrieval")
    if retrieval:
        out["retrieval"] = {"seconds": retrieval.get("seconds"), "best_epoch": retrieval.get("best_epoch"),
                            "epochs_run": len(retrieval.get("history") or []), "rows": retrieval.get("rows"),
                            "epoch_seconds": [round(h.get("seconds", 0.0), 1) for h in retrieval.get("history") or []
                                              if isinstance(h, dict) and "seconds" in h]}
    ranking = _read_report(reports, "ranking")
    if ranking:
        out["ranking"] = {"seconds": ranking.get("seconds"), "rows": ranking.get("rows"),
                          "timings": ranking.get("timings") or ranking.get("seconds_by_stage")}
    evaluate = _read_report(reports, "evaluate")
    if evaluate:
        out["evaluate"] = {"seconds": evaluate.get("seconds"), "n_customers": evaluate.get("n_customers"),
                           "system_seconds": evaluate.get("system_seconds"),
                           "stage_seconds": evaluate.get("stage_seconds")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["SMALL", "MEDIUM", "LARGE", "FULL"], default=None)
    parser.add_argument("--data-dir", type=Path, default=None, help="raw files (never written to)")
    parser.add_argument("--home", type=Path, default=None, help="default: a fresh /tmp/hmrec_e2e_<label>")
    parser.add_argument("--label", default=None, help="results file suffix (default: the size)")
    parser.add_argument("--from", dest="from_step", default="data",
                        help="first step to run (data, features, train_retrieval, train_ranking, evaluate); "
                        "later steps reuse the stores an earlier run left in --home")
    parser.add_argument("--earlier-steps", type=Path, default=None,
                        help="JSON {step: figures} measured by an earlier run of the skipped steps, "
                        "copied into the results as such (marked 'from_earlier_run')")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--results", type=Path, default=None,
                        help="results file (default: benchmarks/results/end_to_end_<label>.json)")
    args = parser.parse_args()

    size = args.size or ("FULL" if args.data_dir is not None else "SMALL")
    label = args.label or size
    home = args.home or Path(f"/tmp/hmrec_e2e_{label}")
    if args.from_step == "data" and home.exists():
        shutil.rmtree(home)  # a fresh home: nothing reused from an earlier run
    os.environ.setdefault("MPLBACKEND", "Agg")

    from rich.console import Console

    from hmrec.cli import make_settings
    from hmrec.config import CustomerDataSize
    from hmrec.pipelines.run import run_all

    settings = make_settings(home, args.data_dir, CUSTOMER_DATA_SIZE=CustomerDataSize(size), SEED=args.seed)
    console = Console(stderr=True, width=150)
    meter = Meter()
    run = Run(isolate=True)
    error, t0, t_end = None, None, None
    try:
        with run:
            t0 = time.perf_counter()
            try:
                run_all(settings, console, step_hook=meter, from_step=args.from_step)
            finally:
                t_end = time.perf_counter()  # the after-sample (load, yardstick) is not part of the run
    except BaseException as exc:  # the partial figures are the finding: write them anyway
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        total = (t_end - t0) if t0 is not None and t_end is not None else 0.0
        meter.close()
        steps = dict(meter.steps)
        earlier = json.loads(args.earlier_steps.read_text()) if args.earlier_steps else {}
        steps = {**{k: {**v, "from_earlier_run": True} for k, v in earlier.items() if k not in steps}, **steps}
        result = {
            "benchmark": "end_to_end", "label": label, "size": size,
            "data_dir": str(args.data_dir) if args.data_dir else None, "home": str(home),
            "from_step": args.from_step, "error": error,
            "total_seconds": round(total, 1),
            "total_cpu_seconds": round(sum(s["cpu_seconds"] for s in steps.values()), 1),
            "peak_rss_gb": max((s["peak_rss_gb"] for s in steps.values()), default=None),
            "process_peak_rss_gb": round(peak_rss_mb() / 1024, 2),
            "steps": steps,
            "sub_steps": _sub_steps(settings.reports_dir),
            "settings": {k: (str(v) if not isinstance(v, (int, float, bool, type(None))) else v)
                         for k, v in settings.model_dump().items() if k not in ("API_TOKEN",)},
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        }
        evaluate = _read_report(settings.reports_dir, "evaluate")
        if evaluate and "evaluate" in meter.steps:
            result["headline"] = {s: {m: round(v, 4) for m, v in vals.items() if isinstance(v, (int, float))}
                                  for s, vals in evaluate["metrics"].items()}
        # settings may hold paths: through JSON as strings
        out = write_result(args.results or RESULTS / f"end_to_end_{label}.json",
                           json.loads(json.dumps(result, default=str)), run)
        print(f"\nend to end ({label}{', from ' + args.from_step if args.from_step != 'data' else ''}; load average at start "
              f"{run.before.get('loadavg', [float('nan')])[0]:.2f}){' FAILED: ' + error if error else ''}")
        print(f"{'step':<18}{'wall s':>9}{'CPU s':>9}{'peak GB':>9}")
        for name, s in steps.items():
            print(f"{name:<18}{s['seconds']:>9.1f}{s['cpu_seconds']:>9.1f}{s['peak_rss_gb']:>9.2f}"
                  f"{'' if s['ok'] else '  FAILED'}{'  (earlier run)' if s.get('from_earlier_run') else ''}")
        print(f"{'total':<18}{result['total_seconds']:>9.1f}{result['total_cpu_seconds']:>9.1f}"
              f"{(result['peak_rss_gb'] or 0):>9.2f}")
        print(f"written to {out}")
        print(describe(run))


if __name__ == "__main__":
    main()
