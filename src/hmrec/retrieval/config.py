"""Two-tower configuration: architecture (which features, layer sizes) and training knobs.

Defaults match the reference course and hmrec.config.Settings; ``from_settings`` maps
the TWO_TOWER_* settings so the CLI and the pipelines configure it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hmrec.retrieval.features import (
    DEFAULT_ITEM_FEATURES,
    DEFAULT_QUERY_FEATURES,
    FeatureSpec,
    parse_feature_specs,
)

#: K values for top-K accuracy (the Hopsworks H&M tutorial's "top-100 accuracy" is K=100).
TOP_K: tuple[int, ...] = (1, 5, 10, 50, 100)
#: Implementations of the in-batch softmax (see loss.py and native_loss.py).
LOSS_KERNELS: tuple[str, ...] = ("auto", "native", "torch")
#: K values for per-customer Recall/Precision/NDCG (12 is the Kaggle cut-off).
CUSTOMER_K: tuple[int, ...] = (12, 100)


@dataclass(frozen=True)
class TwoTowerConfig:
    """Everything that decides what a two-tower training run produces.

    fast_matmul: opt-in bf16 matrix products in the in-batch softmax. False (the default):
      fp32 on every CPU, so the precision never depends on the hardware. True: the AMX
      kernel where the CPU has AMX tiles (native/softmax_loss_amx.c: logits split hi + lo
      to ~2^-16, probabilities in bf16 for the gradients), else the PyTorch loss with its
      logits matmul rounded to bf16.
    compile: run the towers + reference loss under torch.compile (falls back to eager with
      a warning when compilation fails). Slower than the fused eager loss on the 2-core
      CPU measured (benchmarks/bench_two_tower.py); kept for other hardware.
    num_threads: torch intra-op (OpenMP) threads while training (None: leave torch's setting).
    step_threads: Python worker threads inside a training step: the loss's row chunks and
      the per-table embedding updates run on them in parallel (torch releases the GIL in
      its ops). Default 1: on the 2-core machine measured, 2 step threads were slower than
      1 (138k vs 158k samples/s idle, 113k vs 146k under load; benchmarks/bench_two_tower.py),
      and 1 OpenMP thread avoids a barrier in every small op. Results are bit-identical
      for any value of step_threads.
    loss_kernel: "auto" (default): the C kernel of native_loss.py when a C compiler built
      it and the logits are fp32, else the PyTorch fused loss; "native": the C kernel or an
      error; "torch": the PyTorch fused loss. Same values within float rounding.
    loss_threads: threads running the C kernel's row ranges (None: the CPU count, at most
      native_loss.RANGES); results are bit-identical for any value.
    epoch_eval_rows: per-epoch validation metrics (model selection) use a seeded sample of
      customers with about this many rows when the window is larger (None: all rows);
      the final metrics always use the whole window.
    restore_best: end with the weights of the best validation epoch.
    patience: stop after this many model-selection points (epochs, and the checkpoints of
      eval_every_rows) without improving the best metric (None: never).
    eval_every_rows: inside an epoch longer than this many training rows, also select the
      model (validation metric on the epoch_eval_rows sample, patience, best weights) after
      every this many rows. At full H&M size one epoch is 31.8M rows and the validation
      metric peaks within the first epoch, so whole-epoch checkpoints would train for
      epochs past the best model; on small data epochs are shorter and nothing changes.
    batching: "time_local" (default): every batch holds purchases of neighbouring days, so
      in-batch negatives are articles on sale at the same time (rows are ordered by day,
      each epoch cuts them at a random offset and shuffles the order of the batches);
      "shuffle": batches drawn uniformly from the whole training period (the reference).
    popularity_prior_days: add the popularity prior (prior.py) computed over this many
      last days of the training split to every score; None: the towers' dot product only.
    prior_smoothing: additive smoothing of the prior's counts (per catalogue article).
    """

    embedding_dim: int = 16
    hidden_dims: tuple[int, ...] = (16,)
    output_dim: int = 16
    query_features: tuple[FeatureSpec, ...] = DEFAULT_QUERY_FEATURES
    item_features: tuple[FeatureSpec, ...] = DEFAULT_ITEM_FEATURES
    batch_size: int = 2048
    num_epochs: int = 10
    learning_rate: float = 0.01
    weight_decay: float = 0.001
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    fast_matmul: bool = False
    compile: bool = False
    seed: int = 42
    num_threads: int | None = 1
    step_threads: int = 1
    eval_every_epoch: bool = True
    epoch_eval_rows: int | None = 20_000
    best_metric: str = "top_100_accuracy"
    restore_best: bool = True
    patience: int | None = 3
    eval_every_rows: int | None = 4_000_000
    top_k: tuple[int, ...] = TOP_K
    customer_k: tuple[int, ...] = CUSTOMER_K
    loss_chunk: int = 256
    loss_kernel: str = "auto"
    loss_threads: int | None = None
    batching: str = "time_local"
    popularity_prior_days: int | None = 14
    prior_smoothing: float = 0.1

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "output_dim", "batch_size", "num_epochs", "loss_chunk", "step_threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TwoTowerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"TwoTowerConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.loss_kernel not in LOSS_KERNELS:
            raise ValueError(f"TwoTowerConfig.loss_kernel must be one of {', '.join(LOSS_KERNELS)}, got {self.loss_kernel!r}")
        if self.loss_threads is not None and self.loss_threads < 1:
            raise ValueError(f"TwoTowerConfig.loss_threads must be >= 1 or None, got {self.loss_threads!r}")
        if self.batching not in ("time_local", "shuffle"):
            raise ValueError(f"TwoTowerConfig.batching must be 'time_local' or 'shuffle', got {self.batching!r}")
        if self.popularity_prior_days is not None and self.popularity_prior_days < 1:
            raise ValueError(f"TwoTowerConfig.popularity_prior_days must be >= 1 or None, got {self.popularity_prior_days!r}")
        if self.prior_smoothing <= 0:
            raise ValueError(f"TwoTowerConfig.prior_smoothing must be > 0, got {self.prior_smoothing!r}")
        if self.weight_decay < 0:
            raise ValueError(f"TwoTowerConfig.weight_decay must be >= 0, got {self.weight_decay!r}")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "TwoTowerConfig":
        """Build from hmrec.config.Settings (TWO_TOWER_*, SEED, RETRIEVAL_K)."""
        s = settings
        k = int(getattr(s, "RETRIEVAL_K", 100))
        query_text = getattr(s, "TWO_TOWER_QUERY_FEATURES", None)
        item_text = getattr(s, "TWO_TOWER_ITEM_FEATURES", None)
        query_features = (
            DEFAULT_QUERY_FEATURES if query_text is None else parse_feature_specs(query_text, "TWO_TOWER_QUERY_FEATURES")
        )
        item_features = (
            DEFAULT_ITEM_FEATURES if item_text is None else parse_feature_specs(item_text, "TWO_TOWER_ITEM_FEATURES")
        )
        cfg = cls(
            query_features=query_features,
            item_features=item_features,
            embedding_dim=int(s.TWO_TOWER_MODEL_EMBEDDING_SIZE),
            hidden_dims=(int(s.TWO_TOWER_MODEL_EMBEDDING_SIZE),),
            output_dim=int(s.TWO_TOWER_MODEL_EMBEDDING_SIZE),
            batch_size=int(s.TWO_TOWER_MODEL_BATCH_SIZE),
            num_epochs=int(s.TWO_TOWER_NUM_EPOCHS),
            learning_rate=float(s.TWO_TOWER_LEARNING_RATE),
            weight_decay=float(s.TWO_TOWER_WEIGHT_DECAY),
            logq_correction=bool(s.TWO_TOWER_LOGQ_CORRECTION),
            remove_accidental_hits=bool(s.TWO_TOWER_REMOVE_ACCIDENTAL_HITS),
            fast_matmul=bool(s.TWO_TOWER_FAST_MATMUL),
            patience=getattr(s, "TWO_TOWER_EARLY_STOPPING_PATIENCE", None),
            eval_every_rows=getattr(s, "TWO_TOWER_EVAL_EVERY_ROWS", 4_000_000),
            batching=str(getattr(s, "TWO_TOWER_BATCHING", "time_local")),
            popularity_prior_days=getattr(s, "TWO_TOWER_POPULARITY_PRIOR_DAYS", 14),
            prior_smoothing=float(getattr(s, "TWO_TOWER_PRIOR_SMOOTHING", 0.1)),
            num_threads=int(getattr(s, "TWO_TOWER_NUM_THREADS", 1)),
            step_threads=int(getattr(s, "TWO_TOWER_STEP_THREADS", 1)),
            loss_kernel=str(getattr(s, "TWO_TOWER_LOSS_KERNEL", "auto")),
            loss_threads=getattr(s, "TWO_TOWER_LOSS_THREADS", None),
            seed=int(s.SEED),
            top_k=tuple(sorted(set(TOP_K) | {k})),
            customer_k=tuple(sorted(set(CUSTOMER_K) | {k})),
            best_metric=f"top_{k}_accuracy",
        )
        return replace(cfg, **overrides) if overrides else cfg
