"""Tower inputs: feature specs, their fitted vocabularies/statistics, and encoding.

A tower is described by a list of :class:`FeatureSpec` (configuration). Fitting a spec
on the training split gives a :class:`FittedFeature` that owns everything needed to
turn RAW values (string ids, raw age) into model inputs, so the very same object
serves at training and at inference time (no training/serving skew). Code 0 of every
vocabulary is the out-of-vocabulary bucket: unseen and null values map there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import torch

Kind = Literal["embedding", "one_hot", "normalized", "raw"]
KINDS: tuple[str, ...] = ("embedding", "one_hot", "normalized", "raw")

#: Vocabulary code of the out-of-vocabulary bucket (unseen or null values).
OOV = 0


@dataclass(frozen=True)
class FeatureSpec:
    """One input of a tower; adding a feature to a tower = adding one of these.

    kind:
      - ``embedding``: string id -> vocabulary code -> learned vector of ``dim``
        (None: the model's embedding size); trained with sparse row updates.
      - ``one_hot``: string category -> vocabulary code -> one-hot vector.
      - ``normalized``: number -> (x - mean) / std with training statistics; nulls are
        imputed with the training median and, if ``missing_flag``, flagged in an extra 0/1 input.
      - ``raw``: number used as is (already scaled, e.g. month_sin); nulls -> 0.
    """

    column: str
    kind: Kind
    dim: int | None = None
    missing_flag: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.column!r}: unknown kind {self.kind!r}; use one of {KINDS}")


def embedding(column: str, dim: int | None = None) -> FeatureSpec:
    """A learned embedding of a string id (sparse updates)."""
    return FeatureSpec(column, "embedding", dim=dim)


def one_hot(column: str) -> FeatureSpec:
    """A one-hot encoded string category."""
    return FeatureSpec(column, "one_hot")


def normalized(column: str, missing_flag: bool = True) -> FeatureSpec:
    """A standardised number (training mean/std; median imputation of nulls)."""
    return FeatureSpec(column, "normalized", missing_flag=missing_flag)


def raw(column: str) -> FeatureSpec:
    """A number passed through unchanged (nulls -> 0)."""
    return FeatureSpec(column, "raw")


#: The Hopsworks H&M tutorial's query tower: customer id, age, month of the request.
DEFAULT_QUERY_FEATURES: tuple[FeatureSpec, ...] = (
    embedding("customer_id"),
    normalized("age"),
    raw("month_sin"),
    raw("month_cos"),
)
#: The Hopsworks H&M tutorial's item tower: article id and two one-hot article attributes.
DEFAULT_ITEM_FEATURES: tuple[FeatureSpec, ...] = (
    embedding("article_id"),
    one_hot("garment_group_name"),
    one_hot("index_group_name"),
)


def parse_feature_specs(text: str, setting: str = "feature specs") -> tuple[FeatureSpec, ...]:
    """Parse ``"kind:column[:dim], ..."`` (e.g. a TWO_TOWER_*_FEATURES setting) into specs.

    Why a string: it keeps "add a feature to a tower" a one-line configuration change
    (env var, ``.env`` or CLI). ``dim`` is allowed for embeddings only. ``setting`` names
    the source in error messages.
    """
    specs: list[FeatureSpec] = []
    items = [p.strip() for p in str(text).split(",")]
    if not any(items):
        raise ValueError(f"{setting}: no features given; use e.g. 'embedding:article_id,one_hot:index_name'")
    for pos, item in enumerate(items, start=1):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ValueError(
                f"{setting}: item {pos} {item!r} is not 'kind:column' or 'embedding:column:dim' "
                f"(kinds: {', '.join(KINDS)})"
            )
        kind, column = parts[0].lower(), parts[1]
        if kind not in KINDS:
            raise ValueError(f"{setting}: item {pos} {item!r}: unknown kind {parts[0]!r}; use one of {', '.join(KINDS)}")
        dim = None
        if len(parts) == 3:
            if kind != "embedding":
                raise ValueError(f"{setting}: item {pos} {item!r}: only embedding features take a size")
            try:
                dim = int(parts[2])
            except ValueError:
                dim = 0
            if dim < 1:
                raise ValueError(f"{setting}: item {pos} {item!r}: embedding size must be a positive integer, got {parts[2]!r}")
        if any(s.column == column for s in specs):
            raise ValueError(f"{setting}: item {pos} {item!r}: column {column!r} is listed twice")
        specs.append(FeatureSpec(column, kind, dim=dim))  # type: ignore[arg-type]
    return tuple(specs)


def format_feature_specs(specs: tuple[FeatureSpec, ...] | list[FeatureSpec]) -> str:
    """The inverse of :func:`parse_feature_specs` (for reports and settings defaults)."""
    return ",".join(f"{s.kind}:{s.column}" + (f":{s.dim}" if s.dim else "") for s in specs)


@dataclass
class FittedFeature:
    """A spec plus what was learnt from the training split (vocabulary or statistics)."""

    spec: FeatureSpec
    vocab: pl.Series | None = None
    mean: float = 0.0
    std: float = 1.0
    median: float = 0.0
    _lookup: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    # ---- shape -----------------------------------------------------------------------
    @property
    def is_categorical(self) -> bool:
        return self.spec.kind in ("embedding", "one_hot")

    @property
    def cardinality(self) -> int:
        """Number of codes including the OOV bucket (categorical features only)."""
        assert self.vocab is not None
        return len(self.vocab) + 1

    @property
    def dense_width(self) -> int:
        """Number of float inputs this feature contributes to the dense matrix."""
        if self.spec.kind == "normalized":
            return 2 if self.spec.missing_flag else 1
        if self.spec.kind == "raw":
            return 1
        return 0

    # ---- encoding -----------------------------------------------------------------------
    def _check_column(self, df: pl.DataFrame) -> pl.Series:
        if self.spec.column not in df.columns:
            raise ValueError(
                f"column {self.spec.column!r} is missing from the input frame "
                f"(has: {', '.join(df.columns)})"
            )
        return df.get_column(self.spec.column)

    def codes(self, df: pl.DataFrame) -> np.ndarray:
        """Vocabulary codes (int32, 0 = OOV) of a categorical column."""
        s = self._check_column(df)
        if s.dtype != pl.String:
            s = s.cast(pl.String)
        if self._lookup is None:
            assert self.vocab is not None
            self._lookup = pl.DataFrame(
                {"value": self.vocab.cast(pl.String), "code": np.arange(1, len(self.vocab) + 1, dtype=np.int32)}
            )
        out = s.replace_strict(
            self._lookup.get_column("value"), self._lookup.get_column("code"), default=OOV, return_dtype=pl.Int32
        )
        return np.array(out.to_numpy(), dtype=np.int32)

    def dense(self, df: pl.DataFrame) -> np.ndarray:
        """Float inputs, shape (n, dense_width)."""
        s = self._check_column(df)
        if not s.dtype.is_numeric():
            raise ValueError(f"column {self.spec.column!r} must be numeric, got {s.dtype}")
        x = s.cast(pl.Float64).to_numpy()
        missing = np.isnan(x)
        if self.spec.kind == "raw":
            return np.where(missing, 0.0, x).astype(np.float32)[:, None]
        z = (np.where(missing, self.median, x) - self.mean) / self.std
        cols = [z]
        if self.spec.missing_flag:
            cols.append(missing.astype(np.float64))
        return np.stack(cols, axis=1).astype(np.float32)

    # ---- persistence -------------------------------------------------------------------
    def to_json(self) -> dict:
        """Statistics and spec (vocabularies are written separately, they can be large)."""
        return {"spec": asdict(self.spec), "mean": self.mean, "std": self.std, "median": self.median}

    @classmethod
    def from_json(cls, data: dict, vocab: pl.Series | None) -> FittedFeature:
        return cls(FeatureSpec(**data["spec"]), vocab, float(data["mean"]), float(data["std"]), float(data["median"]))


def fit_feature(spec: FeatureSpec, df: pl.DataFrame) -> FittedFeature:
    """Learn a feature's vocabulary (sorted distinct non-null values) or statistics."""
    if spec.column not in df.columns:
        raise ValueError(f"cannot fit feature {spec.column!r}: column missing (has: {', '.join(df.columns)})")
    s = df.get_column(spec.column)
    if spec.kind in ("embedding", "one_hot"):
        values = s.cast(pl.String).drop_nulls().unique().sort().rename("value")
        return FittedFeature(spec, vocab=values)
    if spec.kind == "raw":
        return FittedFeature(spec)
    x = s.cast(pl.Float64).drop_nulls().drop_nans()
    if x.len() == 0:
        raise ValueError(f"cannot fit feature {spec.column!r}: no non-null values in the training split")
    mean = float(x.mean())
    std = float(x.std(ddof=0)) if x.len() > 1 else 0.0
    return FittedFeature(spec, mean=mean, std=std if std > 0 else 1.0, median=float(x.median()))


@dataclass
class TowerInputs:
    """Encoded tower inputs, one row per example: integer codes and a float matrix.

    ``cat`` holds one int32 column per categorical feature (embeddings first, then
    one-hots, in spec order within each group); ``dense`` the float inputs.
    """

    cat: torch.Tensor
    dense: torch.Tensor

    def __len__(self) -> int:
        return int(self.cat.shape[0])

    def take(self, idx: torch.Tensor) -> TowerInputs:
        """Rows at ``idx`` (a batch)."""
        return TowerInputs(self.cat.index_select(0, idx), self.dense.index_select(0, idx))

    def slice(self, start: int, stop: int) -> TowerInputs:
        return TowerInputs(self.cat[start:stop], self.dense[start:stop])


def encode(features: list[FittedFeature], df: pl.DataFrame) -> TowerInputs:
    """Turn a raw frame into tower inputs (same layout as the tower expects)."""
    n = df.height
    emb = [f for f in features if f.spec.kind == "embedding"]
    oh = [f for f in features if f.spec.kind == "one_hot"]
    cat_cols = [f.codes(df) for f in emb + oh]
    cat = np.stack(cat_cols, axis=1) if cat_cols else np.zeros((n, 0), np.int32)
    dense_cols = [f.dense(df) for f in features if f.dense_width]
    dense = np.concatenate(dense_cols, axis=1) if dense_cols else np.zeros((n, 0), np.float32)
    return TowerInputs(torch.from_numpy(np.ascontiguousarray(cat)), torch.from_numpy(np.ascontiguousarray(dense)))
