"""Training loop for the two-tower model: pre-tensorised data, sparse embedding updates.

``train(train_df, val_df, articles_df, config)`` is the whole job on plain frames of the
``retrieval`` feature view (docs/architecture.md): fit vocabularies on the training
split, encode everything once into tensors, run epochs of in-batch softmax with
AdamW (dense layers) + row-sparse AdamW (embedding tables, see sparse_adam.py),
measure validation loss and exact whole-catalogue metrics next to popularity and
random baselines, and keep the best epoch. Scores include the popularity prior
(prior.py) when configured; batches are time-local by default (config.py).

Per step, only index arithmetic happens in Python: a batch is a slice of the epoch's
row order, the query inputs are ``index_select``-ed from pre-encoded tensors, item
inputs come from the encoded catalogue by catalogue position, and embedding rows are
gathered outside autograd so their gradients are small dense (rows x dim) blocks. The
loss with its gradients and the embedding-table updates run in C kernels where they can
be built (native_loss.py, sparse_adam.py), else in PyTorch.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import polars as pl
import torch
from torch import nn

from hmrec.retrieval import native_loss
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.features import TowerInputs
from hmrec.retrieval.loss import fused_in_batch_softmax_loss, in_batch_softmax_loss, native_in_batch_softmax_loss
from hmrec.retrieval.metrics import (
    EvalSplit,
    catalogue_positions,
    evaluate_embeddings,
    evaluate_popularity,
    evaluate_random,
    make_eval_split,
    popularity_scores,
    subsample_split,
)
from hmrec.retrieval.model import TwoTowerModel
from hmrec.retrieval.prior import PopularityPrior
from hmrec.retrieval.sparse_adam import LazyRowAdamW


@dataclass
class EpochStats:
    """One epoch: losses (mean per example), throughput and validation metrics."""

    epoch: int
    train_retrieval_loss: float
    train_regularization_loss: float
    train_total_loss: float
    val_retrieval_loss: float
    val_regularization_loss: float
    val_total_loss: float
    samples_per_second: float
    train_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    rows: int = 0  # training rows seen in this epoch (fewer than the split when early stopping cut it short)


@dataclass
class TrainResult:
    """A trained model plus what happened while training it."""

    model: TwoTowerModel
    history: list[EpochStats]
    best_epoch: int
    metrics: dict[str, dict[str, float]]
    config: TwoTowerConfig
    seconds: float
    #: every model-selection point: {"epoch", "rows" (seen since the start), metric, "best"}
    checkpoints: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


@dataclass
class EncodedSplit:
    """A split as tensors: query inputs per row and the catalogue position of its article."""

    query: TowerInputs
    item_pos: torch.Tensor  # int64 catalogue positions

    def __len__(self) -> int:
        return len(self.item_pos)


def log_q_table(train_item_pos: np.ndarray, n_items: int) -> torch.Tensor:
    """log of each catalogue item's sampling probability in training batches (count / rows).

    Items never seen in training get a pseudo-count of 1 (they can appear only in
    validation batches).
    """
    counts = np.bincount(np.asarray(train_item_pos, dtype=np.int64), minlength=n_items).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    return torch.from_numpy(np.log(counts / max(len(train_item_pos), 1)).astype(np.float32))


def regularization_loss(model: nn.Module, weight_decay: float) -> float:
    """0.5 * wd * sum of squared parameters: the L2 objective whose gradient step is the
    decay that (decoupled) AdamW applies. Reported, not added to the gradient."""
    with torch.no_grad():
        total = sum(float(p.double().pow(2).sum()) for p in model.parameters())
    return 0.5 * weight_decay * total


# ---------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------


class _DenseTowers(nn.Module):
    """The MLP parameters of both towers, as one module (what DDP synchronises).

    The embedding tables are deliberately not registered here: their gradients are
    row-sparse and synchronised/updated by :class:`LazyRowAdamW`.
    """

    def __init__(self, model: TwoTowerModel) -> None:
        super().__init__()
        self.query_mlp = model.query_tower.mlp
        self.item_mlp = model.item_tower.mlp
        object.__setattr__(self, "_model", model)

    def forward(self, q_rows, q_in: TowerInputs, i_rows, i_in: TowerInputs):  # type: ignore[override]
        m = self._model
        return m.query_tower.forward_rows(q_rows, q_in), m.item_tower.forward_rows(i_rows, i_in)


SparseSync = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Parallel:
    """How train() cooperates with other processes (built by hmrec.retrieval.ddp).

    rank/world: this process's share of every global batch; wrap_dense: wraps the dense
    towers (DistributedDataParallel); sparse_sync: combines embedding-row gradients of
    all ranks; all_reduce_sum: sums floats over ranks (epoch loss totals).
    """

    rank: int
    world: int
    wrap_dense: Callable[[nn.Module], nn.Module]
    sparse_sync: SparseSync
    all_reduce_sum: Callable[[list[float]], list[float]]


def loss_path(config: TwoTowerConfig) -> tuple[str, str]:
    """Which in-batch softmax runs: ('native' | 'torch', 'fp32' | 'bf16').

    config.loss_kernel picks the implementation ('auto': the C kernel where it builds),
    config.fast_matmul the precision: fp32 unless the user opted in to bf16. The C
    kernel's bf16 path needs AMX; without it fast_matmul=True runs the PyTorch loss's bf16
    matmul under 'auto' and is an error under 'native'.
    """
    precision = "bf16" if config.fast_matmul else "fp32"
    if config.loss_kernel == "torch" or config.compile:
        return ("torch", precision)
    if not native_loss.available(config.output_dim):
        if config.loss_kernel == "native":
            raise RuntimeError("loss_kernel='native' but the C kernel could not be built (see the warning above)")
        return ("torch", precision)
    if precision == "fp32" or native_loss.amx_available(config.output_dim):
        return ("native", precision)
    if config.loss_kernel == "native":
        raise ValueError(
            "loss_kernel='native' with fast_matmul=True needs AMX tiles (Intel Sapphire Rapids or later, "
            f"embedding size 16; this is {config.output_dim}); set fast_matmul to False"
        )
    return ("torch", precision)


class StepEngine:
    """Owns the optimisers and runs one training step; shared by train(), DDP and benchmarks."""

    def __init__(
        self,
        model: TwoTowerModel,
        config: TwoTowerConfig,
        catalogue: TowerInputs,
        log_q: torch.Tensor | None,
        dense_module: nn.Module | None = None,
        sparse_sync: SparseSync | None = None,
        fused_loss: bool = True,
    ) -> None:
        self.model = model
        self.config = config
        self.catalogue = catalogue
        self.log_q = log_q if config.logq_correction else None
        self.dense = dense_module if dense_module is not None else _DenseTowers(model)
        self.sparse_sync = sparse_sync
        dense_params = [p for p in _DenseTowers(model).parameters()]
        self.dense_params = dense_params
        self.dense_opt = torch.optim.AdamW(
            dense_params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
        )
        self.tables = [*model.query_tower.embeddings, *model.item_tower.embeddings]
        self.sparse_opts = [
            LazyRowAdamW(t.weight.data, lr=config.learning_rate, weight_decay=config.weight_decay) for t in self.tables
        ]
        self.n_query_tables = len(model.query_tower.embeddings)
        self.fused_loss = fused_loss
        # the reference (unfused) loss is PyTorch's; loss_path then only settles the precision
        kernel, precision = loss_path(config if fused_loss else replace(config, loss_kernel="torch"))
        self.native_loss = kernel == "native"
        self.loss_precision = precision
        self.loss_threads = config.loss_threads or max(1, min(os.cpu_count() or 1, native_loss.RANGES))
        self._pool = ThreadPoolExecutor(config.step_threads, "hmrec-step") if config.step_threads > 1 else None
        self.compiled = False
        self._forward = self._eager_forward
        if config.compile and dense_module is None:
            self._forward = self._compiled_forward
            self._compiled_fn = torch.compile(self._reference_forward, dynamic=False)
            self.compiled = True

    def describe(self) -> str:
        """Which numeric path runs (for logs and benchmarks)."""
        if self.compiled:
            path = "torch.compile(towers + loss)"
        else:
            path = "eager, " + (
                f"native loss ({self.loss_threads} threads)" if self.native_loss
                else "fused loss" if self.fused_loss else "reference loss"
            )
        return f"{path}, {self.loss_precision} products"

    # -- forward variants ------------------------------------------------------------
    def _eager_forward(self, q_rows, q_in, i_rows, i_in, log_q, keys) -> torch.Tensor:
        cfg = self.config
        q, i = self.dense(q_rows, q_in, i_rows, i_in)
        if self.native_loss:
            return native_in_batch_softmax_loss(
                q, i, log_q, keys, cfg.remove_accidental_hits, threads=self.loss_threads, precision=self.loss_precision
            )
        if self.fused_loss:
            return fused_in_batch_softmax_loss(
                q,
                i,
                log_q,
                keys,
                cfg.remove_accidental_hits,
                low_precision=self.loss_precision == "bf16",
                chunk=cfg.loss_chunk,
                threads=cfg.step_threads,
            )
        return in_batch_softmax_loss(q, i, log_q, keys, cfg.remove_accidental_hits, low_precision=self.loss_precision == "bf16")

    def _reference_forward(self, q_rows, q_cat, q_dense, i_rows, i_cat, i_dense, log_q, keys) -> torch.Tensor:
        cfg = self.config
        q, i = self.dense(q_rows, TowerInputs(q_cat, q_dense), i_rows, TowerInputs(i_cat, i_dense))
        return in_batch_softmax_loss(q, i, log_q, keys, cfg.remove_accidental_hits, low_precision=self.loss_precision == "bf16")

    def _compiled_forward(self, q_rows, q_in, i_rows, i_in, log_q, keys) -> torch.Tensor:
        try:
            return self._compiled_fn(q_rows, q_in.cat, q_in.dense, i_rows, i_in.cat, i_in.dense, log_q, keys)
        except Exception as exc:  # no compiler toolchain, unsupported op, ...: stay correct, just slower
            warnings.warn(f"torch.compile unavailable ({type(exc).__name__}: {exc}); using the eager path", RuntimeWarning)
            self._forward = self._eager_forward
            self.compiled = False
            return self._eager_forward(q_rows, q_in, i_rows, i_in, log_q, keys)

    def batch_loss(self, q_in: TowerInputs, item_pos: torch.Tensor, grad: bool) -> tuple[torch.Tensor, list]:
        """Forward pass of a batch; returns the loss and the (ids, rows) of every table."""
        i_in = self.catalogue.take(item_pos)
        gathered = []
        q_rows, i_rows = [], []
        for k in range(len(self.tables)):
            src = q_in if k < self.n_query_tables else i_in
            col = k if k < self.n_query_tables else k - self.n_query_tables
            ids = src.cat[:, col].long()
            rows = self.tables[k].weight.detach().index_select(0, ids)
            if grad:
                rows.requires_grad_(True)
            gathered.append((ids, rows))
            (q_rows if k < self.n_query_tables else i_rows).append(rows)
        log_q = None if self.log_q is None else self.log_q.index_select(0, item_pos)
        return self._forward(q_rows, q_in, i_rows, i_in, log_q, item_pos), gathered

    def step(self, q_in: TowerInputs, item_pos: torch.Tensor) -> float:
        """One optimisation step; returns the batch's mean retrieval loss."""
        loss, gathered = self.batch_loss(q_in, item_pos, grad=True)
        for p in self.dense_params:  # zero_grad(set_to_none=True) without its ~0.1 ms of wrappers
            p.grad = None
        loss.backward()
        if self.sparse_sync is not None:
            self.dense_opt.step()
            for opt, (ids, rows) in zip(self.sparse_opts, gathered):
                opt.step(*self.sparse_sync(ids, rows.grad))
        elif self._pool is not None:
            # the tables are independent: update them in parallel with the dense step
            futures = [self._pool.submit(opt.step, ids, rows.grad, rows) for opt, (ids, rows) in zip(self.sparse_opts, gathered)]
            self.dense_opt.step()
            for f in futures:
                f.result()
        else:
            self.dense_opt.step()
            for opt, (ids, rows) in zip(self.sparse_opts, gathered):
                opt.step(ids, rows.grad, rows)
        return float(loss.detach())

    def flush(self) -> None:
        """Bring every embedding row's weight decay up to date (before eval/save)."""
        for opt in self.sparse_opts:
            opt.flush()

    @torch.no_grad()
    def mean_loss(self, split: EncodedSplit, batch_size: int) -> float:
        """Mean per-example in-batch loss over a split, in its stored (time) order."""
        total, n = 0.0, 0
        for s in range(0, len(split), batch_size):
            e = min(len(split), s + batch_size)
            loss, _ = self.batch_loss(split.query.slice(s, e), split.item_pos[s:e], grad=False)
            total += float(loss) * (e - s)
            n += e - s
        return total / n if n else float("nan")


def epoch_order(n: int, batch_size: int, generator: torch.Generator, batching: str = "shuffle") -> torch.Tensor:
    """Row order of one epoch; consecutive ``batch_size`` slices are the batches.

    shuffle: a uniform permutation. time_local (rows stored in time order): contiguous
    blocks cut at a random offset (the last block wraps around), in shuffled block order.
    """
    if batching == "shuffle":
        return torch.randperm(n, generator=generator)
    offset = int(torch.randint(0, max(batch_size, 1), (1,), generator=generator)) % max(n, 1)
    rows = torch.arange(n).add_(offset).remainder_(n)
    blocks = torch.split(rows, batch_size)
    order = torch.randperm(len(blocks), generator=generator).tolist()
    return torch.cat([blocks[k] for k in order])


def run_epoch(
    engine: StepEngine,
    data: EncodedSplit,
    batch_size: int,
    generator: torch.Generator,
    on_batch: Callable[[int, int], None] | None = None,
    shard: tuple[int, int] = (0, 1),
    batching: str = "shuffle",
    checkpoint: tuple[int, Callable[[], bool]] | None = None,
) -> tuple[float, int]:
    """One pass over shuffled data; returns (sum of loss x examples, examples) for this shard.

    With ``shard=(rank, world)`` every rank draws the same permutation and takes its own
    contiguous part of each global batch (DDP). ``checkpoint=(every, fn)`` calls ``fn``
    after every ``every`` batches (not after the last one); the pass ends early when it
    returns True.
    """
    n = len(data)
    perm = epoch_order(n, batch_size, generator, batching)
    rank, world = shard
    n_batches = math.ceil(n / batch_size)
    if world > 1 and n % batch_size and n % batch_size < world:
        n_batches -= 1  # a last global batch smaller than the world would leave a rank empty
    loss_sum, seen = 0.0, 0
    for b in range(n_batches):
        glob = perm[b * batch_size : (b + 1) * batch_size]
        idx = torch.tensor_split(glob, world)[rank] if world > 1 else glob
        loss = engine.step(data.query.take(idx), data.item_pos.index_select(0, idx))
        loss_sum += loss * len(idx)
        seen += len(idx)
        if on_batch is not None:
            on_batch(b + 1, n_batches)
        if checkpoint is not None and (b + 1) % checkpoint[0] == 0 and b + 1 < n_batches and checkpoint[1]():
            break
    return loss_sum, seen


# ---------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Everything train() derives from the frames before the first step."""

    model: TwoTowerModel
    catalogue_ids: pl.Series
    catalogue: TowerInputs
    train: EncodedSplit
    val: EncodedSplit | None
    val_split: EvalSplit | None
    log_q: torch.Tensor
    popularity: np.ndarray
    articles: pl.DataFrame


def prepare(
    train_df: pl.DataFrame, val_df: pl.DataFrame | None, articles_df: pl.DataFrame, config: TwoTowerConfig
) -> Prepared:
    """Fit the towers on the training split and encode every split once."""
    if train_df.height == 0:
        raise ValueError("training split is empty")
    model = TwoTowerModel.untrained(train_df, articles_df, config)
    catalogue_ids = articles_df["article_id"].cast(pl.String)
    if config.popularity_prior_days is not None:
        model.set_prior(fit_prior(train_df, catalogue_ids, config))
    catalogue = model.item_tower.encode(articles_df)
    train_pos = catalogue_positions(train_df["article_id"], catalogue_ids, "training split")
    train = EncodedSplit(model.query_tower.encode(train_df), torch.from_numpy(np.array(train_pos, dtype=np.int64)))
    if config.batching == "time_local":
        # time order (ties in a seeded random order), applied to the encoded tensors (cheap,
        # no sort of the string frame): consecutive rows = neighbouring days
        order = torch.from_numpy(time_order(train_df["t_dat"].cast(pl.Int32).to_numpy(), config.seed))
        train = EncodedSplit(train.query.take(order), train.item_pos.index_select(0, order))
    val = val_split = None
    if val_df is not None and val_df.height:
        val_split = make_eval_split(val_df, catalogue_ids, "validation split")
        val = EncodedSplit(
            model.query_tower.encode(val_split.rows), torch.from_numpy(np.array(val_split.row_target, dtype=np.int64))
        )
    return Prepared(
        model=model,
        catalogue_ids=catalogue_ids,
        catalogue=catalogue,
        train=train,
        val=val,
        val_split=val_split,
        log_q=log_q_table(train_pos, catalogue_ids.len()),
        popularity=popularity_scores(train_df, catalogue_ids),
        articles=articles_df,
    )


def time_order(days: np.ndarray, seed: int) -> np.ndarray:
    """Row order by day, rows of the same day in a seeded random order.

    A seeded permutation followed by a stable sort on the day (as int16 offsets, which
    NumPy radix-sorts): linear time, where a lexsort of 30M rows took ~20 s.
    """
    perm = np.random.default_rng(seed).permutation(len(days))
    offsets = days - (days.min() if len(days) else 0)
    key = offsets.astype(np.int16) if len(days) and offsets.max() < np.iinfo(np.int16).max else offsets
    return perm[np.argsort(key[perm], kind="stable")].astype(np.int64)


def fit_prior(history_df: pl.DataFrame, catalogue_ids: pl.Series, config: TwoTowerConfig) -> PopularityPrior:
    """The popularity prior as of the end of ``history_df`` (see prior.py).

    The training-period counts (log q) are subtracted for logQ-trained models; they come
    from ``history_df`` too, which is the training split when called by train().
    """
    assert config.popularity_prior_days is not None
    return PopularityPrior.fit(
        history_df,
        catalogue_ids,
        days=config.popularity_prior_days,
        smoothing=config.prior_smoothing,
        train_df=history_df if config.logq_correction else None,
    )


def model_metrics(
    model: TwoTowerModel,
    split: EvalSplit,
    articles_df: pl.DataFrame,
    config: TwoTowerConfig,
    prior: PopularityPrior | None = None,
) -> dict:
    """Exact whole-catalogue metrics of the model (with its prior, or ``prior``) on a split."""
    item_emb = model.item_tower.embed(articles_df, prior=prior)
    row_emb = model.query_tower.embed(split.rows)
    cust_emb = model.query_tower.embed(split.customers)
    return evaluate_embeddings(split, row_emb, cust_emb, item_emb, config.top_k, config.customer_k)


def baseline_metrics(split: EvalSplit, popularity: np.ndarray, config: TwoTowerConfig) -> dict[str, dict[str, float]]:
    return {
        "popularity": evaluate_popularity(split, popularity, config.top_k, config.customer_k),
        "random": evaluate_random(split, config.seed, config.top_k, config.customer_k),
    }


def evaluate(
    model: TwoTowerModel,
    eval_df: pl.DataFrame,
    train_df: pl.DataFrame,
    articles_df: pl.DataFrame,
    config: TwoTowerConfig = TwoTowerConfig(),
) -> dict[str, dict[str, float]]:
    """Model, popularity and random metrics on one window (e.g. the test split).

    ``train_df`` is the history before the window: the popularity baseline and, for a
    model with a popularity prior, a prior refreshed as of its last day come from it (the
    model is not changed; the prior keeps the model's days/smoothing and its log q).
    """
    catalogue_ids = articles_df["article_id"].cast(pl.String)
    split = make_eval_split(eval_df, catalogue_ids, "evaluation split")
    pop = popularity_scores(train_df, catalogue_ids)
    prior = None
    if model.prior is not None:
        prior = model.prior.refresh(train_df, catalogue_ids)
    return {"two_tower": model_metrics(model, split, articles_df, config, prior), **baseline_metrics(split, pop, config)}


def _epoch_stats(epoch: int, engine: StepEngine, prep: Prepared, config: TwoTowerConfig,
                 epoch_split: EvalSplit | None, loss_sum: float, seen: int, train_seconds: float) -> EpochStats:
    """Losses, throughput and (sampled) validation metrics at the end of an epoch."""
    engine.flush()
    reg = regularization_loss(prep.model, config.weight_decay)
    train_loss = loss_sum / seen
    val_loss = engine.mean_loss(prep.val, config.batch_size) if prep.val is not None else float("nan")
    metrics = model_metrics(prep.model, epoch_split, prep.articles, config) if epoch_split is not None else {}
    return EpochStats(
        epoch=epoch, train_retrieval_loss=train_loss, train_regularization_loss=reg, train_total_loss=train_loss + reg,
        val_retrieval_loss=val_loss, val_regularization_loss=reg, val_total_loss=val_loss + reg,
        samples_per_second=seen / train_seconds if train_seconds > 0 else float("inf"),
        train_seconds=train_seconds, metrics=metrics, rows=seen,
    )


class ModelSelection:
    """Keeps the best weights by a validation metric and decides when patience has run out.

    A selection point is the end of an epoch or, inside a long epoch, a checkpoint every
    ``eval_every_rows`` rows; both count the same toward patience.
    """

    def __init__(self, model: TwoTowerModel, metric: str, patience: int | None, keep_best: bool) -> None:
        self.model, self.metric, self.patience, self.keep_best = model, metric, patience, keep_best
        self.best_epoch, self.best_value, self.best_state = 0, None, None
        self.stale = 0
        self.checkpoints: list[dict] = []

    def better(self, value: float) -> bool:
        """True when ``value`` beats the best so far (lower for a loss, higher otherwise)."""
        if self.best_value is None or math.isnan(self.best_value):
            return not math.isnan(value)
        return value < self.best_value if self.metric == "val_retrieval_loss" else value > self.best_value

    def record(self, epoch: int, rows: int, value: float) -> bool:
        """Record a selection point; True when patience says stop."""
        better = self.better(value)
        if better:
            self.best_epoch, self.best_value, self.stale = epoch, value, 0
            if self.keep_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.stale += 1
        self.checkpoints.append({"epoch": epoch, "rows": rows, self.metric: value, "best": better})
        return self.patience is not None and self.stale >= self.patience

    def restore_best(self) -> None:
        if self.keep_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class InEpochCheck:
    """The model-selection point inside a long epoch, called by run_epoch every ``every`` batches."""

    def __init__(self, every: int, batch_size: int, measure: Callable[[], float], selection: ModelSelection,
                 engine: StepEngine) -> None:
        self.every, self.batch_size, self.measure = every, batch_size, measure
        self.selection, self.engine = selection, engine
        self.epoch, self.rows_before, self.rows_in_epoch = 0, 0, 0
        self.seconds, self.stopped = 0.0, False

    def start_epoch(self, epoch: int, rows_before: int) -> None:
        self.epoch, self.rows_before, self.rows_in_epoch, self.seconds = epoch, rows_before, 0, 0.0

    def __call__(self) -> bool:
        t = time.perf_counter()
        self.rows_in_epoch += self.every * self.batch_size
        self.engine.flush()
        self.stopped = self.selection.record(self.epoch, self.rows_before + self.rows_in_epoch, self.measure())
        self.seconds += time.perf_counter() - t
        return self.stopped


def train(
    train_df: pl.DataFrame,
    val_df: pl.DataFrame | None,
    articles_df: pl.DataFrame,
    config: TwoTowerConfig = TwoTowerConfig(),
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    parallel: Parallel | None = None,
) -> TrainResult:
    """Train a two-tower model on the retrieval view's training split (see module doc).

    ``parallel`` (from hmrec.retrieval.ddp) splits every global batch over processes;
    all processes end with identical models.
    """
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        prep = prepare(train_df, val_df, articles_df, config)
        model = prep.model
        model.train()
        engine = StepEngine(model, config, prep.catalogue, prep.log_q, **({} if parallel is None else dict(
            dense_module=parallel.wrap_dense(_DenseTowers(model)), sparse_sync=parallel.sparse_sync)))
        shard = (0, 1) if parallel is None else (parallel.rank, parallel.world)
        gen = torch.Generator().manual_seed(config.seed)
        history: list[EpochStats] = []
        epoch_split = None
        if config.eval_every_epoch and prep.val_split is not None:
            epoch_split = prep.val_split
            if config.epoch_eval_rows is not None:
                epoch_split = subsample_split(prep.val_split, config.epoch_eval_rows, config.seed)
        metric = config.best_metric if epoch_split is not None else "val_retrieval_loss"
        selection = ModelSelection(model, metric, config.patience, config.restore_best)
        check = None
        if epoch_split is not None and config.eval_every_rows:
            check = InEpochCheck(
                max(1, math.ceil(config.eval_every_rows / config.batch_size)), config.batch_size,
                lambda: model_metrics(model, epoch_split, prep.articles, config).get(metric, float("nan")),
                selection, engine)
        rows_before = 0  # training rows of the finished epochs (all ranks)
        for epoch in range(1, config.num_epochs + 1):
            te = time.perf_counter()
            if check is not None:
                check.start_epoch(epoch, rows_before)
            loss_sum, seen = run_epoch(engine, prep.train, config.batch_size, gen, on_batch, shard, config.batching,
                                       None if check is None else (check.every, check))
            train_seconds = time.perf_counter() - te - (check.seconds if check is not None else 0.0)
            if parallel is not None:
                loss_sum, seen_f = parallel.all_reduce_sum([loss_sum, float(seen)])
                seen = int(round(seen_f))
            stats = _epoch_stats(epoch, engine, prep, config, epoch_split, loss_sum, seen, train_seconds)
            history.append(stats)
            rows_before += seen
            if on_epoch is not None:
                on_epoch(stats)
            if check is not None and check.stopped:
                break
            value = stats.val_retrieval_loss if metric == "val_retrieval_loss" else stats.metrics.get(metric, float("nan"))
            if selection.record(epoch, rows_before, value):
                break
        selection.restore_best()
        model.eval()
        results: dict[str, dict[str, float]] = {}
        if prep.val_split is not None:
            results["two_tower"] = model_metrics(model, prep.val_split, prep.articles, config)
            results.update(baseline_metrics(prep.val_split, prep.popularity, config))
        best_epoch = selection.best_epoch or len(history)
        return TrainResult(model, history, best_epoch, results, config, time.perf_counter() - t0, selection.checkpoints)
    finally:
        torch.set_num_threads(old_threads)
