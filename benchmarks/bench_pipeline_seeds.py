"""The end-to-end headline (MAP@12 on the test week) over several training seeds, same data.

Usage:
    python benchmarks/bench_pipeline_seeds.py                        # MEDIUM, training seeds 42-45, one dataset
    python benchmarks/bench_pipeline_seeds.py --size SMALL --seeds 42,43              # a quick check
    python benchmarks/bench_pipeline_seeds.py --seeds 42,43 --variant 'fp32;TWO_TOWER_FAST_MATMUL=false'
    python benchmarks/bench_pipeline_seeds.py --vary-data            # a new dataset per seed as well

Why: a MEDIUM test week holds a few hundred buying customers, so the evaluation's
bootstrap interval (docs/metrics.md) is wide; and the same data trained with another
seed (initial weights, batch order, which epoch early stopping picks, ALS's factors)
moves MAP@12 too. The interval measures the first, this benchmark the second: one
dataset is generated once (``--data-seed``, through ``datasets.generate``) and every
(variant, seed) is a full ``hmrec run --size SIZE --seed SEED --data-dir DATA`` in its
own home (features, both trainings, registry, evaluation), with the variant's settings
in the environment. ``--vary-data`` generates each seed's own dataset instead (the
spread then includes the data's).

Read from each run's ``reports/evaluate.json``: MAP@12 of every system, its 95%
interval, the customer count, and the pipeline's paired differences. Printed and
written, per variant and system: MAP@12 mean, std, min and max over seeds, and the
mean width of the bootstrap interval next to them (is the seed spread smaller or larger
than the sampling noise?); the same for the pipeline's difference to each system.
Results: benchmarks/results/pipeline_seeds_<size>.json (``--results PATH`` to write
elsewhere), with the machine block of ``machine.write_result``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_two_tower_quality import parse_variant  # the same NAME;KEY=VALUE variants
from datasets import generate
from machine import RESULTS, Run, describe, write_result

METRIC = "map_at_12"


def run_once(size: str, seed: int, overrides: dict[str, str], home: Path, data_dir: Path | None) -> dict:
    """One `hmrec run` in ``home`` (on ``data_dir`` when given, else on data it generates with
    ``seed``): MAP@12, interval and paired difference per system, and the two-tower model's best epoch."""
    env = {**os.environ, **overrides}
    cmd = [sys.executable, "-m", "hmrec.cli", "run", "--size", size, "--seed", str(seed), "--home", str(home)]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"hmrec run (seed {seed}, {overrides}) failed:\n{done.stderr[-2000:]}")
    evaluate = json.loads((home / "reports" / "evaluate.json").read_text())
    retrieval = json.loads((home / "reports" / "retrieval.json").read_text())
    systems = list(evaluate["metrics"])
    return {
        METRIC: {s: evaluate["metrics"][s][METRIC] for s in systems if METRIC in evaluate["metrics"][s]},
        "ci95": {s: v[METRIC] for s, v in evaluate.get("intervals", {}).items() if METRIC in v},
        "pipeline_minus": {s: v[METRIC] for s, v in evaluate.get("differences", {}).items() if METRIC in v},
        "n_customers": evaluate.get("n_customers"),
        "two_tower_best_epoch": retrieval["best_epoch"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value), min and max, and how many."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarise(by_seed: dict[int, dict]) -> dict:
    """Per system: MAP@12 spread over seeds plus the mean width of its 95% interval; per
    other system: the spread of the pipeline's difference to it, and how many seeds'
    intervals of that difference lay above 0, below 0 or around it."""
    runs = list(by_seed.values())
    systems = [s for s in runs[0][METRIC] if all(s in r[METRIC] for r in runs)]
    out: dict = {"systems": {}, "pipeline_minus": {}}
    for s in systems:
        row = spread([r[METRIC][s] for r in runs])
        widths = [r["ci95"][s][1] - r["ci95"][s][0] for r in runs if s in r["ci95"]]
        if widths:
            row["mean_ci95_width"] = statistics.fmean(widths)
        out["systems"][s] = row
    for s in [s for s in systems if all(s in r["pipeline_minus"] for r in runs)]:
        diffs = [r["pipeline_minus"][s] for r in runs]
        row = spread([d["diff"] for d in diffs])
        row["seeds_above_0"] = sum(d["ci95"][0] > 0 for d in diffs)
        row["seeds_below_0"] = sum(d["ci95"][1] < 0 for d in diffs)
        row["seeds_including_0"] = len(diffs) - row["seeds_above_0"] - row["seeds_below_0"]
        out["pipeline_minus"][s] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="MEDIUM")
    p.add_argument("--seeds", default="42,43,44,45", help="training seeds (SEED of each `hmrec run`)")
    p.add_argument("--data-seed", type=int, default=42, help="seed of the one dataset every run trains on")
    p.add_argument("--vary-data", action="store_true", help="generate each seed's own dataset (seed = SEED)")
    p.add_argument("--variant", action="append", default=None, help="NAME or NAME;KEY=VALUE;... (repeatable)")
    p.add_argument("--results", type=Path, default=None, help="results file (default results/pipeline_seeds_<size>.json)")
    args = p.parse_args()
    size = args.size.upper()
    variants = dict(parse_variant(v, known={"default": {}}) for v in (args.variant or ["default"]))
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[int, dict]] = {name: {} for name in variants}
    with tempfile.TemporaryDirectory() as tmp, Run(isolate=True) as run:
        data_dir = None
        if not args.vary_data:
            data_dir = Path(tmp) / "data"
            print(f"generating {size} data (seed {args.data_seed}) ... ", end="", flush=True)
            print(f"{generate(data_dir, size, args.data_seed):.1f} s", flush=True)
        for name, overrides in variants.items():
            for seed in seeds:
                r = run_once(size, seed, overrides, Path(tmp) / f"{name}_{seed}", data_dir)
                runs[name][seed] = r
                maps = "  ".join(f"{s} {v:.4f}" for s, v in r[METRIC].items() if not s.startswith("pipeline_"))
                print(f"{name:10s} seed {seed}: {maps}  ({r['n_customers']} customers, two-tower epoch "
                      f"{r['two_tower_best_epoch']}, {r['seconds']} s)", flush=True)
    summary = {name: summarise(by_seed) for name, by_seed in runs.items()}
    for name, s in summary.items():
        print(f"\n== {name}: MAP@12 over {len(runs[name])} training seeds"
              f"{'' if args.vary_data else f' on one dataset (seed {args.data_seed})'}")
        print(f"  {'system':44s} {'mean':>7s} {'std':>7s} {'min':>7s} {'max':>7s} {'CI width':>8s}")
        for system, v in s["systems"].items():
            width = f"{v['mean_ci95_width']:.4f}" if "mean_ci95_width" in v else ""
            print(f"  {system:44s} {v['mean']:.4f} {v['std']:.4f} {v['min']:.4f} {v['max']:.4f} {width:>8s}")
        print("  pipeline minus (seeds whose paired 95% interval is above 0 / includes 0 / below 0):")
        for system, v in s["pipeline_minus"].items():
            print(f"  {system:44s} {v['mean']:+.4f} {v['std']:.4f} {v['min']:+.4f} {v['max']:+.4f}  "
                  f"{v['seeds_above_0']}/{v['seeds_including_0']}/{v['seeds_below_0']}")
    out = args.results or RESULTS / f"pipeline_seeds_{size}.json"
    write_result(out, {
        "benchmark": "pipeline_seeds", "size": size, "seeds": seeds,
        "data_seed": None if args.vary_data else args.data_seed, "vary_data": args.vary_data,
        "metric": METRIC, "variants": variants, "summary": summary,
        "runs": {n: {str(k): v for k, v in r.items()} for n, r in runs.items()},
    }, run)
    print(f"\n{describe(run)}\nwritten to {out}")


if __name__ == "__main__":
    main()
