"""Every tunable of hmrec in one place.

Values come, in increasing priority, from the defaults below, a `.env` file in the
working directory, environment variables, and CLI flags (the CLI builds a Settings
with explicit keyword arguments). The Hopsworks H&M tutorial's names are kept where they
exist (TWO_TOWER_*, RANKING_*, CUSTOMER_DATA_SIZE) so its readers find them.
Environment variables use the same names, with or without an ``HMREC_`` prefix for
the project-level paths (``HMREC_HOME``, ``HMREC_DATA_DIR``). The home folder's
field is HOME_DIR, not HOME, so the shell's $HOME is never mistaken for it.
"""

from __future__ import annotations

import typing
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class CustomerDataSize(str, Enum):
    """How many customers the pipelines sample (the Hopsworks H&M tutorial's sizes, plus FULL)."""

    SMALL = "SMALL"
    MEDIUM = "MEDIUM"
    LARGE = "LARGE"
    FULL = "FULL"

    @property
    def n_customers(self) -> int | None:
        """Number of customers, or None for all of them."""
        return {"SMALL": 1_000, "MEDIUM": 5_000, "LARGE": 50_000, "FULL": None}[self.value]


#: Customers in the real H&M data; FULL-size synthetic data has exactly this many.
FULL_CUSTOMERS = 1_371_980
#: Articles in the real H&M catalogue.
FULL_ARTICLES = 105_542


class Settings(BaseSettings):
    """Project settings; see the README's Configuration section for what each one does."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _unset_words(cls, value: object, info: ValidationInfo) -> object:
        """'none', 'null' or an empty value (any case) unset a setting that may be None,
        e.g. TWO_TOWER_EARLY_STOPPING_PATIENCE=none; an environment variable cannot hold None."""
        unset_word = isinstance(value, str) and value.strip().lower() in ("", "none", "null")
        if unset_word and type(None) in typing.get_args(cls.model_fields[info.field_name].annotation):
            return None
        return value

    # --- where things live -------------------------------------------------------
    HOME_DIR: Path = Field(
        default=Path(".hmrec"),
        validation_alias=AliasChoices("HMREC_HOME", "HOME_DIR"),
        description="Project folder: generated data, feature store, registry, reports.",
    )
    DATA_DIR: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("HMREC_DATA_DIR", "DATA_DIR"),
        description="Raw H&M files (Kaggle CSV or Parquet). Default: <HOME_DIR>/data (generated).",
    )
    MLFLOW_TRACKING_URI: str | None = Field(
        default=None,
        description="MLflow tracking/registry URI. Default: sqlite:///<HOME_DIR>/mlflow.db.",
    )

    # --- data --------------------------------------------------------------------
    SEED: int = Field(default=42, validation_alias=AliasChoices("HMREC_SEED", "SEED"))
    CUSTOMER_DATA_SIZE: CustomerDataSize = CustomerDataSize.SMALL
    DROP_UNKNOWN_REFERENCES: bool = Field(
        default=False,
        description="Drop (and count) transactions whose customer or article is unknown "
        "instead of rejecting the file.",
    )

    # --- evaluation protocol (docs/architecture.md, time layout) --------------------
    TEST_DAYS: int = 7
    VALIDATION_DAYS: int = 7
    EVAL_BATCH_SIZE: int = Field(
        default=20_000, gt=0,
        description="Test customers per batch in `hmrec evaluate` (bounds memory; every system sees the same batches).",
    )

    # --- two-tower retrieval (reference course names) ------------------------------
    TWO_TOWER_MODEL_EMBEDDING_SIZE: int = 16
    TWO_TOWER_MODEL_BATCH_SIZE: int = 2048
    TWO_TOWER_NUM_EPOCHS: int = 10
    TWO_TOWER_LEARNING_RATE: float = 0.01
    TWO_TOWER_WEIGHT_DECAY: float = 0.001
    TWO_TOWER_LOGQ_CORRECTION: bool = True
    TWO_TOWER_REMOVE_ACCIDENTAL_HITS: bool = True
    TWO_TOWER_FAST_MATMUL: bool = Field(
        default=False,
        description="Opt-in bf16 matrix products in the in-batch softmax (the AMX kernel on CPUs with AMX "
        "tiles, else PyTorch's bf16 matmul). Off by default, so the numeric precision never depends on the CPU.",
    )
    TWO_TOWER_EARLY_STOPPING_PATIENCE: int | None = Field(
        default=3,
        description="Stop after this many epochs without a better validation top-K accuracy (None: run all epochs).",
    )
    TWO_TOWER_EVAL_EVERY_ROWS: int | None = Field(
        default=4_000_000,
        description="Inside longer epochs, also check validation (and early stopping) after every this many rows.",
    )
    TWO_TOWER_BATCHING: str = Field(
        default="time_local",
        description="'time_local': batches of neighbouring days; 'shuffle': uniform batches (the reference).",
    )
    TWO_TOWER_POPULARITY_PRIOR_DAYS: int | None = Field(
        default=14,
        description="Days of sales behind the popularity prior added to every score (None: towers only). "
        "14, not 7: on SMALL/MEDIUM data a week's sales are too few per article "
        "(benchmarks/bench_two_tower_quality.py).",
    )
    TWO_TOWER_PRIOR_SMOOTHING: float = Field(default=0.1, description="Additive smoothing of the prior's counts.")
    TWO_TOWER_QUERY_FEATURES: str = Field(
        default="embedding:customer_id,normalized:age,raw:month_sin,raw:month_cos",
        description="Query-tower inputs, 'kind:column[:dim]' comma-separated (kinds: embedding, "
        "one_hot, normalized, raw); columns of the retrieval view / customers group.",
    )
    TWO_TOWER_ITEM_FEATURES: str = Field(
        default="embedding:article_id,one_hot:garment_group_name,one_hot:index_group_name",
        description="Item-tower inputs, 'kind:column[:dim]' comma-separated; columns of the articles group.",
    )
    TWO_TOWER_NUM_THREADS: int = Field(default=1, description="torch intra-op threads while training.")
    TWO_TOWER_STEP_THREADS: int = Field(
        default=1,
        description="Python threads sharing a training step's loss and updates (2 measured slower on 2 cores).",
    )
    TWO_TOWER_LOSS_KERNEL: str = Field(
        default="auto",
        description="In-batch softmax implementation: 'auto' (C kernel built at first use if a C "
        "compiler exists, else PyTorch), 'native' (C kernel or error), 'torch'.",
    )
    TWO_TOWER_LOSS_THREADS: int | None = Field(
        default=None, description="Threads of the C loss kernel (None: the CPU count, at most 4)."
    )
    RETRIEVAL_K: int = 100
    RETRIEVAL_POPULAR_CANDIDATES: int = Field(
        default=50,
        description="Best sellers of the last week added to the two-tower candidates (0: two-tower only).",
    )

    # --- ranking (reference course names) ------------------------------------------
    RANKING_LEARNING_RATE: float = 0.2
    RANKING_ITERATIONS: int = 100
    RANKING_DEPTH: int = Field(
        default=6,
        description="CatBoost tree depth (the reference uses 10; 6 ranks better on a few weeks of rows).",
    )
    RANKING_TRAIN_WEEKS: int = Field(
        default=3,
        description="Weeks before validation whose purchases train the ranker; the two-tower model "
        "trains on the data before them, so its scores are out-of-sample there.",
    )
    RANKING_SCALE_POS_WEIGHT: float = 10.0
    RANKING_EARLY_STOPPING_ROUNDS: int = 5
    RANKING_NEGATIVES: str = Field(default="retrieval", description="'retrieval' or 'random'.")
    RANKING_RANDOM_NEGATIVES_PER_POSITIVE: int = 10
    RANKING_NEGATIVES_PER_CUSTOMER: int | None = Field(
        default=None,
        description="Keep at most this many hard negatives per customer and training week (seeded "
        "uniform draw; list-position features are computed before thinning). None or 0: all.",
    )
    RANKING_MAX_TRAIN_CUSTOMERS: int | None = Field(
        default=20_000,
        description="Seeded sample of each training week's buyers (None: all). Bounds time and "
        "memory at FULL size; MEDIUM/LARGE weeks have fewer buyers than the default.",
    )
    RANKING_MAX_EVAL_CUSTOMERS: int | None = Field(
        default=20_000,
        description="Seeded sample of validation buyers for the ranking report (None: all).",
    )
    RANKING_COMPARE_RANDOM_NEGATIVES: bool = Field(
        default=True,
        description="Also fit the reference's random-negative variant and report it beside the default.",
    )
    RANKING_COMPARE_YETIRANK: bool = Field(
        default=True,
        description="Also fit CatBoostRanker (YetiRank, grouped by customer and week) on the same rows "
        "and report it beside the classifier.",
    )
    RANKING_COMPARE_MAX_ROWS: int | None = Field(
        default=1_000_000,
        description="Skip the comparison models (YetiRank, random negatives) when the ranker's training "
        "rows outnumber this (FULL: ~2.3M rows, ~8 min of diagnostics); the skip and its reason go to "
        "ranking.json. None: always fit them.",
    )

    # --- serving -------------------------------------------------------------------
    FILTER_POLICY: str = Field(
        default="exclude_purchased",
        description="Stage 2 of the recommender; chosen by `hmrec evaluate` on generated data (see README).",
    )
    API_TOKEN: str | None = Field(default=None, description="Bearer token for POST /events and /admin/*.")
    SERVING_BATCH_MAX: int = Field(
        default=64, ge=1,
        description="Most recommendation requests answered by one vectorised call (1: no micro-batching).",
    )
    SERVING_BATCH_WAIT_MS: float = Field(
        default=2.0, ge=0,
        description="Longest a request waits for others to join its batch (it never waits when no other "
        "accepted request can join).",
    )

    # --- derived paths -----------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """Raw files to read: DATA_DIR if set, else the generated dataset under HOME_DIR."""
        return Path(self.DATA_DIR) if self.DATA_DIR is not None else Path(self.HOME_DIR) / "data"

    @property
    def store_dir(self) -> Path:
        """Offline feature store (Delta tables) and online store (SQLite)."""
        return Path(self.HOME_DIR) / "store"

    @property
    def artifacts_dir(self) -> Path:
        """Local model artifacts before/besides registration."""
        return Path(self.HOME_DIR) / "artifacts"

    @property
    def reports_dir(self) -> Path:
        """Machine-readable reports: <HOME_DIR>/reports/<step>.json."""
        return Path(self.HOME_DIR) / "reports"

    @property
    def mlflow_uri(self) -> str:
        """Tracking and registry URI; a local SQLite database unless configured."""
        if self.MLFLOW_TRACKING_URI:
            return self.MLFLOW_TRACKING_URI
        return f"sqlite:///{(Path(self.HOME_DIR) / 'mlflow.db').resolve()}"
