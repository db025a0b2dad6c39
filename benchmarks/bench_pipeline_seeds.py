"""The end-to-end headline (MAP@12 on the test week) over several generated datasets.

Usage:
    python benchmarks/bench_pipeline_seeds.py                                # MEDIUM, seeds 42-45, default settings
    python benchmarks/bench_pipeline_seeds.py --seeds 42,43 --variant 'fp32;TWO_TOWER_FAST_MATMUL=false'

Why: a MEDIUM test week holds ~360 buying customers, so one `make run` moves by about
+-0.01 MAP@12 with the data and with which epoch the two-tower model's early stopping
picks. Whether the 4-stage pipeline beats two-tower alone, or whether a setting helps,
needs several datasets. Each (variant, seed) is a full ``hmrec run --size SIZE --seed
SEED`` in its own home (generated data, features, both trainings, registry, evaluation),
with the variant's settings in the environment; the script reads MAP@12 of every system
from that run's ``reports/evaluate.json``. Printed and written: per run, and mean +- std
over seeds per variant and system, plus the paired difference pipeline - two_tower.
Results: benchmarks/results/pipeline_seeds_<size>.json.
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

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = ("popularity", "popularity_by_age", "repurchase_popularity", "als", "two_tower", "pipeline")


def run_once(size: str, seed: int, overrides: dict[str, str], home: Path) -> dict:
    """One `hmrec run` in ``home``; MAP@12 per system and the two-tower model's best epoch."""
    env = {**os.environ, **overrides}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hmrec.cli", "run", "--size", size, "--seed", str(seed), "--home", str(home)],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hmrec run (seed {seed}, {overrides}) failed:\n{done.stderr[-2000:]}")
    evaluate = json.loads((home / "reports" / "evaluate.json").read_text())
    retrieval = json.loads((home / "reports" / "retrieval.json").read_text())
    return {
        "map_at_12": {s: evaluate["metrics"][s]["map_at_12"] for s in SYSTEMS},
        "n_customers": evaluate.get("n_customers"),
        "two_tower_best_epoch": retrieval["best_epoch"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="MEDIUM")
    p.add_argument("--seeds", default="42,43,44,45")
    p.add_argument("--variant", action="append", default=None, help="NAME or NAME;KEY=VALUE;... (repeatable)")
    args = p.parse_args()
    variants = dict(parse_variant(v, known={"default": {}}) for v in (args.variant or ["default"]))
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[int, dict]] = {name: {} for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in variants.items():
            for seed in seeds:
                r = run_once(args.size, seed, overrides, Path(tmp) / f"{name}_{seed}")
                runs[name][seed] = r
                maps = "  ".join(f"{s} {r['map_at_12'][s]:.4f}" for s in SYSTEMS)
                print(f"{name:10s} seed {seed}: {maps}  (two-tower epoch {r['two_tower_best_epoch']}, {r['seconds']} s)",
                      flush=True)
    summary = {}
    for name, by_seed in runs.items():
        s = {system: mean_std([r["map_at_12"][system] for r in by_seed.values()]) for system in SYSTEMS}
        s["pipeline_minus_two_tower"] = mean_std(
            [r["map_at_12"]["pipeline"] - r["map_at_12"]["two_tower"] for r in by_seed.values()]
        )
        summary[name] = s
        print(f"\n== {name}: MAP@12, mean +- std over {len(by_seed)} seeds")
        for system, v in s.items():
            print(f"  {system:26s} {v['mean']:.4f} +- {v['std']:.4f}")
    out = RESULTS / f"pipeline_seeds_{args.size}.json"
    out.write_text(json.dumps({"size": args.size, "seeds": seeds, "variants": variants, "summary": summary,
                               "runs": {n: {str(k): v for k, v in r.items()} for n, r in runs.items()}}, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
