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

- default:       what train() runs: the fp32 C loss kernel built for this CPU
                 (HMREC_NATIVE_MARCH, default -march=native) on all cores, 1 OpenMP
                 thread, 1 step thread
- default_1t:    the default with the loss kernel on one thread
- default_omp2:  the default with 2 OpenMP threads for the PyTorch ops around the kernel
- native_v3:     the default with the C kernels built for -march=x86-64-v3 (AVX2 + FMA, the
                 build an AVX2-only CPU such as AMD Zen 3 runs); PyTorch itself unchanged
- native_v2:     the same for -march=x86-64-v2 (SSE4.2, no FMA: the portable baseline)
- native_bf16:   TWO_TOWER_FAST_MATMUL=true: the AMX bf16 kernel where the CPU has it
                 (else the PyTorch bf16 matmul)
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

Other processes on the machine slow every figure; the results file carries the machine
block of benchmarks/machine.py (commit, CPU, load average and a yardstick step before
and after), so a run on a busy machine can be told from one on an idle machine.

Figures are printed and written to benchmarks/results/two_tower.json (--out).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import torch

from hmrec.config import FULL_ARTICLES, FULL_CUSTOMERS
from hmrec.retrieval import native_build
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.features import DEFAULT_ITEM_FEATURES, DEFAULT_QUERY_FEATURES, FittedFeature, TowerInputs
from hmrec.retrieval.model import TwoTowerModel
from hmrec.retrieval.towers import Tower
from hmrec.retrieval.trainer import EncodedSplit, StepEngine, log_q_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Run, describe, peak_rss_mb, write_result  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FULL_ROWS = 31_788_324
VARIANTS = {
    # the trainer's defaults: the fp32 C loss kernel built for this CPU on every core, 1
    # OpenMP thread, 1 step thread
    "default": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1),
    # the default with the loss kernel on one thread
    "default_1t": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1, loss_threads=1),
    # the default with 2 OpenMP threads beside the kernel's 2 threads (2 cores)
    "default_omp2": dict(fast_matmul=False, compile=False, fused_loss=True, omp=2, step_threads=1),
    # the C kernels built for AVX2 + FMA (x86-64-v3) and for SSE4.2 (x86-64-v2)
    "native_v3": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1, march="x86-64-v3"),
    "native_v2": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=1, march="x86-64-v2"),
    # bf16 opt-in: the AMX kernel where the CPU has AMX tiles
    "native_bf16": dict(fast_matmul=True, compile=False, fused_loss=True, omp=1, step_threads=1),
    # the default with the embedding-table updates on 2 Python threads
    "native_step_threads_2": dict(fast_matmul=False, compile=False, fused_loss=True, omp=1, step_threads=2),
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


#: The -march the C kernels are built for when a variant names none (HMREC_NATIVE_MARCH at start).
BASE_MARCH = native_build.march()


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
    """A fresh model and StepEngine configured as variant `name` (sets torch's thread count and
    the -march of the C kernels, which stays in effect while the variant runs)."""
    v = VARIANTS[name]
    os.environ[native_build.MARCH_ENV] = v.get("march", BASE_MARCH)
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
    chunk = max(1, args.batches // 10)  # the best tenth: less sensitive to other processes' bursts
    best_chunk_s = float("inf")
    c0 = time.process_time()
    t0 = tc = time.perf_counter()
    for n, k in enumerate(range(args.warmup, args.warmup + args.batches), 1):
        sl = idx[k * b : (k + 1) * b]
        losses.append(engine.step(data.query.take(sl), data.item_pos.index_select(0, sl)))
        if n % chunk == 0:
            now = time.perf_counter()
            best_chunk_s, tc = min(best_chunk_s, (now - tc) / chunk), now
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    ms = 1000 * seconds / args.batches
    sps = args.batches * b / seconds
    return {
        "variant": name,
        "omp_threads": torch.get_num_threads(),
        "step_threads": config.step_threads,
        "engine": engine.describe(),
        "native_march": native_build.march() if native_build.enabled() else None,
        "ms_per_batch": round(ms, 3),
        "samples_per_s": round(sps),
        # the fastest tenth of the timed batches (ms per batch, samples/s)
        "best_tenth_ms_per_batch": round(1000 * best_chunk_s, 3),
        "best_tenth_samples_per_s": round(b / best_chunk_s),
        # CPU seconds of this process per batch: robust to other processes on the machine
        # (with 1 thread it is the step's compute time; with more it includes OpenMP spinning)
        "cpu_ms_per_batch": round(1000 * cpu_seconds / args.batches, 3),
        "warmup_s": round(warm_s, 2),
        "first_loss": round(losses[0], 4),
        "last_loss": round(losses[-1], 4),
    }


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
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data, catalogue = synthetic_data(args.rows, args.customers, args.articles, args.seed)
    log_q = log_q_table(data.item_pos.numpy(), args.articles)
    build_s = time.perf_counter() - t0
    if args.profile:
        print(profile_variant(args.profile, data, catalogue, log_q, args))
        return
    if args.parts:
        with Run() as run:
            parts = time_parts(args.parts, data, catalogue, log_q, args)
        for part, ms in parts.items():
            print(f"{part:34s}{ms:8.2f} ms")
        out = write_result(RESULTS / f"two_tower_parts_{args.parts}.json",
                           {"variant": args.parts, "batches": args.batches, "ms_per_batch": parts}, run)
        print(f"{describe(run)}; written to {out}")
        return
    t = time.perf_counter()
    torch.randperm(args.rows, generator=torch.Generator().manual_seed(0))
    shuffle_s = time.perf_counter() - t
    results = []
    with Run() as run:
        print(f"load average {os.getloadavg()[0]:.2f} on {psutil.cpu_count()} CPUs; yardstick "
              f"{run.before['yardstick_ms']:.2f} ms", flush=True)
        for name in args.variants.split(","):
            if not native_build.runs_here(VARIANTS[name].get("march", "native")):
                print(f"{name:14s} skipped: this CPU cannot run -march={VARIANTS[name]['march']} code", flush=True)
                continue
            r = time_variant(name, data, catalogue, log_q, args)
            n_batches = -(-args.rows // args.batch_size)
            r["epoch_s_extrapolated"] = round(n_batches * r["ms_per_batch"] / 1000 + shuffle_s, 1)
            r["peak_rss_mb_so_far"] = round(peak_rss_mb())
            print(
                f"{name:14s} {r['ms_per_batch']:7.2f} ms/batch  {r['samples_per_s']:>9,} samples/s  "
                f"(best tenth {r['best_tenth_ms_per_batch']:6.2f} ms)  "
                f"epoch {r['epoch_s_extrapolated']:6.1f} s  cpu {r['cpu_ms_per_batch']:6.2f} ms/batch  "
                f"loss {r['first_loss']:.3f}->{r['last_loss']:.3f}  [{r['engine']}, -march={r['native_march']}]  "
                f"peak RSS {r['peak_rss_mb_so_far']:,} MB",
                flush=True,
            )
            results.append(r)
            gc.collect()
        os.environ[native_build.MARCH_ENV] = BASE_MARCH
    payload = {
        "benchmark": "two_tower",
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": args.threads,
        "rows": args.rows,
        "customers": args.customers,
        "articles": args.articles,
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "warmup_batches": args.warmup,
        "data_build_s": round(build_s, 1),
        "epoch_shuffle_s": round(shuffle_s, 2),
        "variants": results,
        "peak_rss_mb": round(peak_rss_mb()),
        "target_samples_per_s": 330_000,
        "target_peak_rss_mb": 6 * 1024,
    }
    out = write_result(args.out, payload, run)
    print(f"{describe(run)}; peak RSS {payload['peak_rss_mb']:,} MB; written to {out}")


if __name__ == "__main__":
    main()
