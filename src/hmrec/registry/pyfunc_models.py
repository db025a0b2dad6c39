"""The three registered models as MLflow pyfunc models that take RAW features.

Serving loads a model from the registry and calls ``predict(DataFrame)`` with the raw
columns it has (ids as strings, age, month_sin, ...). Everything else a model needs
(vocabularies, normalisation statistics, out-of-vocabulary handling, the CatBoost
trees) is an artifact of the version, so nothing outside the registry can drift.

Each class works two ways:
- in memory, wrapping a freshly trained model: ``QueryPyfunc(two_tower)``; the registry
  calls :meth:`write_artifacts` and uses :meth:`predict` to infer the signature;
- loaded from the registry: MLflow runs the class's code file (``model_code/*.py``,
  "models from code") and calls :meth:`load_context` with the artifact paths.

Models from code rather than a cloudpickled object: the stored model is a three-line
readable file plus the model's own files (CatBoost ``.cbm``, the two-tower directory),
and no Python object pickle has to be trusted or kept compatible across versions.

Ranking uses this wrapper rather than the ``mlflow.catboost`` flavour because that
flavour's pyfunc ``predict`` returns class labels (``CatBoostClassifier.predict``),
not scores, and knows nothing of our missing-category fill; here ``predict`` is
hmrec.ranking's own ``RankingModel.predict`` on the model's native ``.cbm`` file,
so scores are bit-identical to the in-memory model's.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import mlflow.pyfunc
import numpy as np
import pandas as pd
import polars as pl

_CODE_DIR = Path(__file__).parent / "model_code"


def _pinned(*packages: str) -> list[str]:
    """``pkg==version`` for installed packages: explicit requirements skip MLflow's slow inference."""
    out = []
    for name in packages:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


class HmrecPyfunc(mlflow.pyfunc.PythonModel):
    """Base of hmrec's registered models: artifacts out, artifacts in, predict on raw features."""

    #: File MLflow executes to build the model at load time (models from code).
    code_file: ClassVar[str]
    #: Packages the model needs at inference time.
    requirements: ClassVar[tuple[str, ...]] = ("mlflow", "pandas", "numpy")

    @property
    def code_path(self) -> Path:
        """Path of the models-from-code file for this class."""
        return _CODE_DIR / self.code_file

    def pip_requirements(self) -> list[str]:
        """Pinned requirements recorded with the model."""
        return _pinned("hmrec", *self.requirements)

    def write_artifacts(self, directory: Path) -> dict[str, str]:
        """Save the in-memory model under ``directory``; return MLflow's artifacts mapping."""
        raise NotImplementedError

    @property
    def input_columns(self) -> list[str]:
        """Raw columns the model reads; the registered signature names exactly these."""
        raise NotImplementedError

    @property
    def numeric_columns(self) -> list[str]:
        """Input columns the model reads as numbers (it casts them to float itself)."""
        raise NotImplementedError

    def _require_model(self) -> Any:
        model = getattr(self, "model", None)
        if model is None:
            raise RuntimeError(
                f"{type(self).__name__} has no model: construct it with a trained model, "
                "or load it from the registry"
            )
        return model


def _to_polars(df: pd.DataFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """The columns a model reads, as Polars (our models' native input); absent ones are left
    for the model to report by name."""
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    return pl.from_pandas(df)


class RankingPyfunc(HmrecPyfunc):
    """``ranking_model``: candidate features -> relevance score, via hmrec.ranking's RankingModel.

    The ranking model saves itself as a directory (CatBoost ``.cbm`` + feature names,
    categorical columns, missing-category fill); that directory is the artifact, so
    the loaded model prepares its input exactly as the trained one did. Columns are
    matched by name; extra columns are ignored.
    """

    code_file = "ranking_model.py"
    requirements = ("mlflow", "pandas", "numpy", "polars", "pyarrow", "catboost")
    _ARTIFACT = "ranking_model"

    def __init__(self, model: Any = None) -> None:
        self.model = model

    def write_artifacts(self, directory: Path) -> dict[str, str]:
        path = Path(directory) / self._ARTIFACT
        self._require_model().save(path)
        return {self._ARTIFACT: str(path)}

    @property
    def input_columns(self) -> list[str]:
        return list(self._require_model().feature_names_)

    @property
    def numeric_columns(self) -> list[str]:
        model = self._require_model()
        cats = set(model.cat_features_)
        return [c for c in model.feature_names_ if c not in cats]

    def load_context(self, context: Any) -> None:
        from hmrec.ranking.model import RankingModel

        self.model = RankingModel.load(context.artifacts[self._ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """One float64 score per input row (P(purchase) for the classifier)."""
        model = self._require_model()
        scores = model.predict(_to_polars(model_input, list(model.feature_names_)))
        return np.asarray(scores, dtype=np.float64)


class _TowerPyfunc(HmrecPyfunc):
    """One tower of a two-tower model: raw rows -> float32 embeddings (n, output_dim).

    The artifact is the whole saved two-tower directory (vocabularies with their OOV
    bucket, normalisation statistics, weights); it is small, and saving it whole keeps
    one save/load format for retrieval.
    """

    requirements = ("mlflow", "pandas", "numpy", "polars", "pyarrow", "torch")
    _ARTIFACT = "two_tower"
    _tower_attr: ClassVar[str]

    def __init__(self, model: Any = None) -> None:
        self.model = model

    def write_artifacts(self, directory: Path) -> dict[str, str]:
        path = Path(directory) / self._ARTIFACT
        self._require_model().save(path)
        return {self._ARTIFACT: str(path)}

    def load_context(self, context: Any) -> None:
        from hmrec.retrieval.model import TwoTowerModel

        self.model = TwoTowerModel.load(context.artifacts[self._ARTIFACT])

    @property
    def input_columns(self) -> list[str]:
        return list(self.tower.columns)

    @property
    def numeric_columns(self) -> list[str]:
        return [f.spec.column for f in self.tower.features if not f.is_categorical]

    @property
    def tower(self) -> Any:
        """The tower this model serves."""
        return getattr(self._require_model(), self._tower_attr)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """Embeddings, float32, one row per input row."""
        tower = self.tower
        return tower.embed(_to_polars(model_input, list(tower.columns)))


class QueryPyfunc(_TowerPyfunc):
    """``query_model``: customer features + request context (customer_id, age, month_sin,
    month_cos, ...) -> query embedding."""

    code_file = "query_model.py"
    _tower_attr = "query_tower"


class CandidatePyfunc(_TowerPyfunc):
    """``candidate_model``: article features (article_id, garment_group_name,
    index_group_name, ...) -> candidate embedding."""

    code_file = "candidate_model.py"
    _tower_attr = "item_tower"
