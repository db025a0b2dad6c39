"""Two-tower training throughput at the full H&M size (hmrec.retrieval).

Usage:
    python benchmarks/bench_two_tower.py                       # all variants, 2 threads
    python benchmarks/bench_two_tower.py --variants default --batches 400
    python benchmarks/bench_two_tower.py --profile default     # torch.profiler op table
    python benchmarks/bench_two_tower.py --parts default       # ms per part of a step (C kernels included)

What it builds: the reference architecture (query: customer_id emb 16 + normalised age
+ missing flag + month sin/cos -> 16 ReLU -> 16; item: article_id emb 16 + one-hot
garment group (21) + index group (5) -> 16 ReLU -> 16) with FULL vocabularies
(1,371,980 customers, 105,542 articles) and 31,788,324 pre-encoded training rows with
random ids (customers uniform, articles Zipf-like, so batches contain accidental hits
as real data does). For each variant it times ``--batches`` training steps at batch
2048 (after a warm-up), extrapolates the time of one epoch over all rows (plus the
epoch's shuffle), and reports the peak RSS of the process. Variants:

- default:       what train() runs: the C loss kernel on all cores, bf16 products on AMX
                 tiles where the CPU has them (native/softmax_loss_amx.c), 1 OpenMP thread,
                 1 step thread
- default_1t:    the default with the loss kernel on one thread
- native_fp32, native_fp32_1t: the fp32 C kernel (TWO_TOWER_FAST_MATMUL=false; what
                 `auto` runs on CPUs without AMX), on all cores / one thread
- native_step_threads_2: the default with the per-table embedding updates on 2 threads
- torch_fused:   the PyTorch fused fp32 loss (TWO_TOWER_LOSS_KERNEL=torch; the fallback
                 without a C compiler)
- torch_bf16:    the PyTorch fused loss with the bf16 logits matmul
- step_threads_2: the PyTorch fused loss with the loss's row ranges and the embedding updates on 2
                 Python threads (TWO_TOWER_STEP_THREADS=2)
- fused_omp:     fused loss, OpenMP parallelism (--threads), no step threads
- exact_omp:     plain fp32 eager reference loss (B x B logits, cross-entropy, autograd)
- compiled_bf16: towers + reference loss under torch.compile, bf16 logits matmul
- exact_1t:      the reference loss on one thread

Other processes on the machine slow every figure; the script measures the issue's
reference micro-step (8.7 ms on the idle machine) before and after, as a yardstick.

Figures are printed and written to benchmarks/results/two_tower.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import torch

from hmrec.config import FULL_ARTICLES, FULL_CUSTOMERS
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.features import DEFAULT_ITEM_FEATURES, DEFAULT_QUERY_FEATURES, FittedFeature, TowerInputs
from hmrec.retrieval.model import TwoTowerModel
from hmrec.retrieval.towers import Tower
from hmrec.retrieval.trainer import EncodedSplit, StepEngine, log_q_table

RESULTS = Path(__file__).resolve().parent / "results"
FULL_ROWS = 31_788_324
VARIANTS = {
    # the trainer's defaults: the C loss kernel (bf16 AMX tiles where the CPU has them, else
    # fp32) on every core, 1 OpenMP thread, 1 step thread
    "default": dict(fast_matmul=None, compile=False, fused_loss=True, omp=1, step_threads=1),
    # the default with the loss kernel on one thread
    "default_1t": dict(fast_matmul=None, compile=False, fused_loss=True, omp=1, step_threads=1, loss_threads=1),
    # the fp32 C kernel (TWO_TOWER_FAST_MATMUL=false; the default on CPUs without AMX)
    "native_fp32": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1),
    "native_fp32_1t": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1, loss_threads=1),
    # the default with the embedding-table updates on 2 Python threads
    "native_step_threads_2": dict(fast_matmul=None, compile=False, fused_loss=True, omp=1, step_threads=2),
    # the PyTorch fused loss (the fallback without a compiler), fp32 and with the bf16 matmul
    "torch_fused": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1, loss_kernel="torch"),
    "torch_bf16": dict(fast_matmul=True, compile=False, fused_loss=True, omp=1, step_threads=1, loss_kernel="torch"),
    # the loss's row ranges and the per-table embedding updates on 2 Python threads
    "step_threads_2": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=2,
                           loss_kernel="torch"),
    # the same fused loss with OpenMP doing the parallelism (--threads)
    "fused_omp": dict(fast_matmul=False, compile=False, fused_loss=True, step_threads=1, loss_kernel="torch"),
    # plain fp32 eager: reference in-batch softmax (B x B logits, cross-entropy, autograd)
    "exact_omp": dict(fast_matmul=False, compile=False, fused_loss=False, step_threads=1),
    # one thread, nothing in parallel: compares the numeric paths with no scheduling effects
    "exact_1t": dict(fast_matmul=False, compile=False, fused_loss=False, omp=1, step_threads=1),
    # towers + reference loss under torch.compile, bf16 logits matmul
    "compiled_bf16": dict(fast_matmul=True, compile=True, fused_loss=False, step_threads=1),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vocab(n: int) -> pl.Series:
    return pl.Series("value", np.arange(n)).cast(pl.String)


def build_model(config: TwoTowerConfig, n_customers: int, n_articles: int) -> TwoTowerModel:
    """The reference towers with FULL-size vocabularies (no string data needed)."""
    q_feats = []
    for spec in DEFAULT_QUERY_FEATURES:
        if spec.kind == "embedding":
            q_feats.append(FittedFeature(spec, vocab=_vocab(n_customers)))
        elif spec.kind == "normalized":
            q_feats.append(FittedFeature(spec, mean=36.0, std=14.0, median=32.0))
        else:
            q_feats.append(FittedFeature(spec))
    sizes = {"article_id": n_articles, "garment_group_name": 21, "index_group_name": 5}
    i_feats = [FittedFeature(s, vocab=_vocab(sizes[s.column])) for s in DEFAULT_ITEM_FEATURES]
    model = TwoTowerModel(
        Tower(q_feats, config.embedding_dim, config.hidden_dims, config.output_dim),
        Tower(i_feats, config.embedding_dim, config.hidden_dims, config.output_dim),
    )
    model.reset_parameters(config.seed)
    return model


def synthetic_data(rows: int, n_customers: int, n_articles: int, seed: int) -> tuple[EncodedSplit, TowerInputs]:
    """Encoded training rows + encoded catalogue, as prepare() would produce them."""
    rng = np.random.default_rng(seed)
    cust = rng.integers(1, n_customers + 1, rows, dtype=np.int32)
    # Zipf-like article popularity: a few articles sell a lot, as in H&M data
    weights = 1.0 / np.arange(1, n_articles + 1) ** 0.5  # top article ~0.15% of sales, as in H&M
    item_pos = rng.choice(n_articles, size=rows, p=weights / weights.sum()).astype(np.int64)
    dense = np.empty((rows, 4), dtype=np.float32)
    dense[:, 0] = rng.standard_normal(rows, dtype=np.float32)
    dense[:, 1] = (rng.random(rows, dtype=np.float32) < 0.01).astype(np.float32)
    month = rng.integers(1, 13, rows)
    dense[:, 2] = np.sin(2 * np.pi * month / 12)
    dense[:, 3] = np.cos(2 * np.pi * month / 12)
    query = TowerInputs(torch.from_numpy(cust[:, None]), torch.from_numpy(dense))
    cat = np.stack(
        [
            np.arange(1, n_articles + 1, dtype=np.int32),
            rng.integers(1, 22, n_articles, dtype=np.int32),
            rng.integers(1, 6, n_articles, dtype=np.int32),
        ],
        axis=1,
    )
    catalogue = TowerInputs(torch.from_numpy(cat), torch.zeros(n_articles, 0))
    return EncodedSplit(query, torch.from_numpy(item_pos)), catalogue


def make_engine(name: str, catalogue: TowerInputs, log_q: torch.Tensor, args: argparse.Namespace) -> StepEngine:
    """A fresh model and StepEngine configured as variant `name` (sets torch's thread count)."""
    v = VARIANTS[name]
    config = TwoTowerConfig(
        batch_size=args.batch_size,
        fast_matmul=v["fast_matmul"],
        compile=v["compile"],
        seed=args.seed,
        step_threads=v.get("step_threads", 1),
        loss_kernel=v.get("loss_kernel", "auto"),
        loss_threads=v.get("loss_threads"),
    )
    torch.set_num_threads(v.get("omp", args.threads))
    model = build_model(config, args.customers, args.articles)
    return StepEngine(model, config, catalogue, log_q, fused_loss=v["fused_loss"])


def time_variant(
    name: str, data: EncodedSplit, catalogue: TowerInputs, log_q: torch.Tensor, args: argparse.Namespace
) -> dict:
    engine = make_engine(name, catalogue, log_q, args)
    config = engine.config
    gen = torch.Generator().manual_seed(args.seed)
    n_idx = (args.warmup + args.batches) * args.batch_size
    idx = torch.randint(0, len(data), (n_idx,), generator=gen)
    b = args.batch_size
    t_warm = time.perf_counter()
    for k in range(args.warmup):
        sl = idx[k * b : (k + 1) * b]
        engine.step(data.query.take(sl), data.item_pos.index_select(0, sl))
    warm_s = time.perf_counter() - t_warm
    losses = []
    c0 = time.process_time()
    t0 = time.perf_counter()
    for k in range(args.warmup, args.warmup + args.batches):
        sl = idx[k * b : (k + 1) * b]
        losses.append(engine.step(data.query.take(sl), data.item_pos.index_select(0, sl)))
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    ms = 1000 * seconds / args.batches
    sps = args.batches * b / seconds
    return {
        "variant": name,
        "omp_threads": torch.get_num_threads(),
        "step_threads": config.step_threads,
        "engine": engine.describe(),
        "ms_per_batch": round(ms, 3),
        "samples_per_s": round(sps),
        # CPU seconds of this process per batch: robust to other processes on the machine
        # (with 1 thread it is the step's compute time; with more it includes OpenMP spinning)
        "cpu_ms_per_batch": round(1000 * cpu_seconds / args.batches, 3),
        "warmup_s": round(warm_s, 2),
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


def calibrate(threads: int, reps: int = 5, n: int = 30) -> float:
    """ms of the issue's reference micro-step (plain fp32 2048x16 in-batch softmax, CE,
    backward; 8.7 ms on this machine when idle), best of ``reps``: compares a run's
    conditions with an idle machine, since other processes slow every figure here."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2048, 16, generator=g, requires_grad=True)
    i = torch.randn(2048, 16, generator=g, requires_grad=True)
    labels = torch.arange(2048)

    def step() -> None:
        torch.nn.functional.cross_entropy(q @ i.T, labels).backward()

    for _ in range(5):
        step()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            step()
        best = min(best, (time.perf_counter() - t) / n * 1000)
    return best


def profile_variant(name: str, data, catalogue, log_q, args) -> str:
    from torch.profiler import ProfilerActivity, profile

    engine = make_engine(name, catalogue, log_q, args)
    gen = torch.Generator().manual_seed(0)
    b = args.batch_size

    def batch():
        sl = torch.randint(0, len(data), (b,), generator=gen)
        return data.query.take(sl), data.item_pos.index_select(0, sl)

    for _ in range(args.warmup):
        engine.step(*batch())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(50):
            engine.step(*batch())
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)


def time_parts(name: str, data, catalogue, log_q, args) -> dict[str, float]:
    """Wall ms per batch of each part of a training step (C kernels included, unlike --profile)."""
    import hmrec.retrieval.trainer as trainer_module
    from hmrec.retrieval import sparse_adam

    engine = make_engine(name, catalogue, log_q, args)
    totals: dict[str, float] = {}

    def timed(part, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            totals[part] = totals.get(part, 0.0) + time.perf_counter() - t
            return out
        return wrapper

    saved = (trainer_module.native_in_batch_softmax_loss, trainer_module.fused_in_batch_softmax_loss,
             sparse_adam.LazyRowAdamW.step)
    trainer_module.native_in_batch_softmax_loss = timed("loss (kernel + wrapper)", saved[0])
    trainer_module.fused_in_batch_softmax_loss = timed("loss (kernel + wrapper)", saved[1])
    sparse_adam.LazyRowAdamW.step = timed("row-sparse AdamW", saved[2])
    engine.dense = timed("towers forward", engine.dense)
    engine.dense_opt.step = timed("dense AdamW", engine.dense_opt.step)
    engine.batch_loss = timed("forward total", engine.batch_loss)
    try:
        gen = torch.Generator().manual_seed(args.seed)
        b = args.batch_size
        idx = torch.randint(0, len(data), ((args.warmup + args.batches) * b,), generator=gen)
        step_s = assembly_s = 0.0
        for k in range(args.warmup + args.batches):
            if k == args.warmup:
                totals.clear()
                step_s = assembly_s = 0.0
            t0 = time.perf_counter()
            sl = idx[k * b : (k + 1) * b]
            q_in, item_pos = data.query.take(sl), data.item_pos.index_select(0, sl)
            t1 = time.perf_counter()
            engine.step(q_in, item_pos)
            t2 = time.perf_counter()
            assembly_s += t1 - t0
            step_s += t2 - t1
    finally:
        (trainer_module.native_in_batch_softmax_loss, trainer_module.fused_in_batch_softmax_loss,
         sparse_adam.LazyRowAdamW.step) = saved
    ms = {k: 1000 * v / args.batches for k, v in totals.items()}
    forward = ms.pop("forward total")
    parts = {
        "loss (kernel + wrapper)": ms.get("loss (kernel + wrapper)", 0.0),
        "towers forward": ms.get("towers forward", 0.0),
        "gathers, log q (rest of forward)": forward - ms.get("loss (kernel + wrapper)", 0.0) - ms.get("towers forward", 0.0),
        "backward": 1000 * step_s / args.batches - forward - ms.get("dense AdamW", 0.0) - ms.get("row-sparse AdamW", 0.0),
        "row-sparse AdamW": ms.get("row-sparse AdamW", 0.0),
        "dense AdamW": ms.get("dense AdamW", 0.0),
        "batch assembly": 1000 * assembly_s / args.batches,
    }
    parts["step + assembly"] = 1000 * (step_s + assembly_s) / args.batches
    return {k: round(v, 3) for k, v in parts.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=FULL_ROWS)
    p.add_argument("--customers", type=int, default=FULL_CUSTOMERS)
    p.add_argument("--articles", type=int, default=FULL_ARTICLES)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--profile", default=None, help="print a torch.profiler table for this variant instead")
    p.add_argument("--parts", default=None, help="print ms per batch of each part of this variant's step instead")
    p.add_argument("--out", type=Path, default=RESULTS / "two_tower.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_start = psutil.getloadavg()[0]
    t0 = time.perf_counter()
    data, catalogue = synthetic_data(args.rows, args.customers, args.articles, args.seed)
    log_q = log_q_table(data.item_pos.numpy(), args.articles)
    build_s = time.perf_counter() - t0
    if args.profile:
        print(profile_variant(args.profile, data, catalogue, log_q, args))
        return
    if args.parts:
        parts = time_parts(args.parts, data, catalogue, log_q, args)
        for part, ms in parts.items():
            print(f"{part:34s}{ms:8.2f} ms")
        out = RESULTS / f"two_tower_parts_{args.parts}.json"
        out.write_text(json.dumps({"variant": args.parts, "batches": args.batches, "ms_per_batch": parts,
                                   "load_avg_1m_at_start": round(load_start, 2)}, indent=2) + "\n")
        print(f"written to {out}")
        return
    t = time.perf_counter()
    torch.randperm(args.rows, generator=torch.Generator().manual_seed(0))
    shuffle_s = time.perf_counter() - t
    calib_before = calibrate(args.threads)
    calib_1 = calibrate(1)
    print(
        f"calibration: plain in-batch softmax step {calib_before:.2f} ms at {args.threads} threads (8.7 ms idle), "
        f"{calib_1:.2f} ms at 1 thread; load average {psutil.getloadavg()[0]:.1f} on {psutil.cpu_count()} CPUs"
    )
    results = []
    for name in args.variants.split(","):
        r = time_variant(name, data, catalogue, log_q, args)
        n_batches = -(-args.rows // args.batch_size)
        r["epoch_s_extrapolated"] = round(n_batches * r["ms_per_batch"] / 1000 + shuffle_s, 1)
        r["peak_rss_mb_so_far"] = round(peak_rss_mb())
        print(
            f"{name:14s} {r['ms_per_batch']:7.2f} ms/batch  {r['samples_per_s']:>9,} samples/s  "
            f"epoch {r['epoch_s_extrapolated']:6.1f} s  cpu {r['cpu_ms_per_batch']:6.2f} ms/batch  loss {r['first_loss']:.3f}->{r['last_loss']:.3f}  "
            f"[{r['engine']}]  peak RSS {r['peak_rss_mb_so_far']:,} MB",
            flush=True,
        )
        results.append(r)
        gc.collect()
    calib_after = calibrate(args.threads)
    out = {
        "benchmark": "two_tower",
        # the reference micro-step measured before/after the variants, and on an
        # idle machine (8.7 ms): the ratio says how much other load slowed this run
        "calibration_plain_softmax_ms": {
            "before": round(calib_before, 2),
            "after": round(calib_after, 2),
            "one_thread_before": round(calib_1, 2),
            "idle": 8.7,
        },
        "load_avg_1m_at_start": round(load_start, 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": psutil.cpu_count(),
        "threads": args.threads,
        "load_avg_1m_at_end": round(psutil.getloadavg()[0], 2),
        "rows": args.rows,
        "customers": args.customers,
        "articles": args.articles,
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "data_build_s": round(build_s, 1),
        "epoch_shuffle_s": round(shuffle_s, 2),
        "variants": results,
        "peak_rss_mb": round(peak_rss_mb()),
        "target_samples_per_s": 330_000,
        "target_peak_rss_mb": 6 * 1024,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(args.out)
    print(f"peak RSS {out['peak_rss_mb']:,} MB; written to {args.out}")


if __name__ == "__main__":
    main()
