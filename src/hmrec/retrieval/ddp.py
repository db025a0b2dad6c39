"""Data-parallel two-tower training under torchrun (DistributedDataParallel, gloo on CPU).

    torchrun --nproc_per_node=2 -m hmrec.retrieval.ddp \\
        --train train.parquet --val val.parquet --articles articles.parquet --out DIR

Every process reads the same frames, fits the same vocabularies (deterministic) and
starts from the same seeded weights. Each global batch (``--batch-size``) is split
over the processes. The dense tower layers are wrapped in DDP, which averages their
gradients during backward. The embedding tables are not: their gradients are a few
rows per batch, so the processes all-gather (row ids, row gradients), divide by the
world size (DDP's averaging) and apply the identical row-sparse AdamW update, which
keeps every replica bit-identical without all-reducing 1.37M x 16 tables.

Options not given keep the TWO_TOWER_* settings (environment or .env), so a run is
configured like ``hmrec train retrieval``; each process runs the loss on one thread.

Rank 0 writes ``DIR/model`` (TwoTowerModel.save) and ``DIR/result.json`` (history,
best epoch, metrics, and whether all replicas ended identical).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import polars as pl
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hmrec.config import Settings
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.trainer import Parallel, train


def _all_gather_rows(ids: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate every rank's (ids, gradient rows), rank order; gradients / world."""
    world = dist.get_world_size()
    n = torch.tensor([ids.shape[0]], dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    top = max(counts)
    pad_ids = torch.zeros(top, dtype=torch.int64)
    pad_ids[: ids.shape[0]] = ids
    pad_g = torch.zeros(top, grads.shape[1], dtype=grads.dtype)
    pad_g[: grads.shape[0]] = grads
    all_ids = [torch.empty_like(pad_ids) for _ in range(world)]
    all_g = [torch.empty_like(pad_g) for _ in range(world)]
    dist.all_gather(all_ids, pad_ids)
    dist.all_gather(all_g, pad_g)
    ids_out = torch.cat([t[:c] for t, c in zip(all_ids, counts)])
    g_out = torch.cat([t[:c] for t, c in zip(all_g, counts)]).div_(world)
    return ids_out, g_out


def _all_reduce_sum(values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def _wrap(module: nn.Module) -> nn.Module:
    return DistributedDataParallel(module)


def replicas_identical(model: nn.Module) -> bool:
    """True when every rank holds exactly the same parameters (checksum min == max)."""
    with torch.no_grad():
        flat = torch.cat([p.detach().double().reshape(-1) for p in model.parameters()])
        sig = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum()])
    lo, hi = sig.clone(), sig.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hmrec.retrieval.ddp", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, type=Path, help="training split (Parquet, retrieval view)")
    p.add_argument("--val", type=Path, default=None, help="validation split (Parquet)")
    p.add_argument("--articles", required=True, type=Path, help="article catalogue (Parquet)")
    p.add_argument("--out", required=True, type=Path, help="output folder (rank 0 writes model/ and result.json)")
    # unset options keep the TWO_TOWER_* settings (environment / .env), as `hmrec train` does
    p.add_argument("--batch-size", type=int, default=None, help="global batch, split over ranks")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--fast-matmul", action="store_true", default=None, help="opt in to bf16 products")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    dist.init_process_group("gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        given = {
            "batch_size": args.batch_size,
            "num_epochs": args.epochs,
            "learning_rate": args.lr,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "fast_matmul": args.fast_matmul,
        }
        config = replace(
            TwoTowerConfig.from_settings(Settings()),
            **{k: v for k, v in given.items() if v is not None},
            num_threads=args.threads,
            step_threads=1,  # one process per core already
            loss_threads=1,
        )
        for path in (args.train, args.articles, args.val):
            if path is not None and not path.exists():
                raise FileNotFoundError(f"{path}: no such file")
        train_df = pl.read_parquet(args.train)
        val_df = pl.read_parquet(args.val) if args.val else None
        articles = pl.read_parquet(args.articles)
        parallel = Parallel(rank, world, _wrap, _all_gather_rows, _all_reduce_sum)
        result = train(train_df, val_df, articles, config, parallel=parallel)
        same = replicas_identical(result.model)
        if rank == 0:
            args.out.mkdir(parents=True, exist_ok=True)
            result.model.save(args.out / "model")
            summary = {
                "world_size": world,
                "replicas_identical": same,
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "metrics": result.metrics,
                "history": [asdict(h) for h in result.history],
                "config": {k: v for k, v in asdict(config).items() if k not in ("query_features", "item_features")},
            }
            tmp = args.out / "result.json.tmp"
            tmp.write_text(json.dumps(summary, indent=2))
            os.replace(tmp, args.out / "result.json")
        # every rank leaves together: a rank tearing gloo down while another still works
        # aborted it now and then ("terminate called without an active exception")
        dist.barrier()
        return 0
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
