"""What `train_ranking` is told to do, in one frozen object built from Settings.

Why an object: the trainer had 24 keyword arguments, each with a default of its own that
had drifted from hmrec.config.Settings (k 100 vs 150 candidates, no comparison cap, no
customer samples). Here every default IS the Settings default (a test checks), so a
library caller and `hmrec train` train the same ranker unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

EARLY_STOPPING = ("holdout", "validation", "none")


@dataclass(frozen=True)
class RankingConfig:
    """Settings of one ranking training run (see train_ranking for what each changes).

    negatives: "retrieval" (hard negatives from the candidates) or "random".
    positives: "all" or "retrieved"; None: "retrieved" with retrieval negatives, else "all".
    k: candidates per customer (RETRIEVAL_K two-tower + RETRIEVAL_POPULAR_CANDIDATES).
    early_stopping: "holdout" (a `holdout_share` of training customers), "validation"
    (the reference's choice: the validation window itself, slightly optimistic) or "none".
    compare_random_negatives / yetirank: also fit those comparison models, unless the
    training rows outnumber `compare_max_rows` (None: no cap).
    negatives_per_customer / max_train_customers / max_eval_customers: thinning and
    seeded samples (None: all).
    """

    negatives: str = "retrieval"
    positives: str | None = None
    k: int = 150
    per_positive: int = 10
    learning_rate: float = 0.2
    iterations: int = 100
    depth: int = 6
    scale_pos_weight: float = 10.0
    early_stopping_rounds: int = 5
    thread_count: int = -1
    early_stopping: str = "holdout"
    holdout_share: float = 0.1
    compare_random_negatives: bool = True
    yetirank: bool = True
    compare_max_rows: int | None = 1_000_000
    negatives_per_customer: int | None = None
    max_train_customers: int | None = 20_000
    max_eval_customers: int | None = 20_000
    seed: int = 42

    def __post_init__(self) -> None:
        if self.negatives not in ("retrieval", "random"):
            raise ValueError(f"RankingConfig.negatives must be 'retrieval' or 'random', got {self.negatives!r}")
        if self.early_stopping not in EARLY_STOPPING:
            raise ValueError(f"RankingConfig.early_stopping must be one of {', '.join(EARLY_STOPPING)}, "
                             f"got {self.early_stopping!r}")

    @property
    def model_params(self) -> dict[str, Any]:
        """RankingModel keyword arguments (all but `kind`)."""
        return {"learning_rate": self.learning_rate, "iterations": self.iterations, "depth": self.depth,
                "scale_pos_weight": self.scale_pos_weight, "early_stopping_rounds": self.early_stopping_rounds,
                "seed": self.seed, "thread_count": self.thread_count}

    @property
    def fits_random_variant(self) -> bool:
        """Whether the random-negative comparison is asked for (it is the main model already
        when the main model trains on random negatives)."""
        return self.compare_random_negatives and self.negatives != "random"

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RankingConfig:
        """Build from hmrec.config.Settings (RANKING_*, RETRIEVAL_K, RETRIEVAL_POPULAR_CANDIDATES, SEED)."""
        s = settings
        cfg = cls(
            negatives=s.RANKING_NEGATIVES,
            k=s.RETRIEVAL_K + s.RETRIEVAL_POPULAR_CANDIDATES,
            per_positive=s.RANKING_RANDOM_NEGATIVES_PER_POSITIVE,
            learning_rate=s.RANKING_LEARNING_RATE,
            iterations=s.RANKING_ITERATIONS,
            depth=s.RANKING_DEPTH,
            scale_pos_weight=s.RANKING_SCALE_POS_WEIGHT,
            early_stopping_rounds=s.RANKING_EARLY_STOPPING_ROUNDS,
            compare_random_negatives=s.RANKING_COMPARE_RANDOM_NEGATIVES,
            yetirank=s.RANKING_COMPARE_YETIRANK,
            compare_max_rows=s.RANKING_COMPARE_MAX_ROWS,
            negatives_per_customer=s.RANKING_NEGATIVES_PER_CUSTOMER or None,
            max_train_customers=s.RANKING_MAX_TRAIN_CUSTOMERS,
            max_eval_customers=s.RANKING_MAX_EVAL_CUSTOMERS,
            seed=s.SEED,
        )
        return replace(cfg, **overrides) if overrides else cfg
