"""The model registry: register, look up, load, lineage, and the champion alias.

A thin layer over MLflow's tracking + model registry that fixes the rules every
pipeline must follow:

- each registration is a new version (1, 2, 3, ...) carrying a signature, an input
  example, params, metrics, and tags naming the feature view (name, version, columns)
  and data fingerprint it was trained on;
- the alias ``champion`` (what serving loads) moves to a new version only when its
  validation metric is at least as good as the current champion's, unless forced;
  the decision is written on the version (tag ``hmrec.champion_decision``);
- lookups by version, by alias, and "best by metric"; unknown names, versions and
  aliases raise :class:`RegistryError` listing what does exist.

Metrics are stored twice on purpose: in the run and on the model (MLflow's UI shows
them there), and as ``metric.<key>`` tags on the version, which are what champion and
best-version decisions read. A run can hold several models (query and candidate
models come from one training run), so run metrics alone could not say which value
belonged to which version.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

from hmrec.config import Settings
from hmrec.registry.pyfunc_models import HmrecPyfunc
from hmrec.registry.tracking import (
    DEFAULT_EXPERIMENT,
    default_artifact_location,
    prepare_backend,
    tracking_uri,
    using_uri,
)

#: Alias that marks the version serving should use.
CHAMPION = "champion"
#: Input examples are cut to this many rows: an example documents the input, it is not data.
MAX_EXAMPLE_ROWS = 10

TAG_FV_NAME = "hmrec.feature_view.name"
TAG_FV_VERSION = "hmrec.feature_view.version"
TAG_FV_COLUMNS = "hmrec.feature_view.columns"
TAG_FINGERPRINT = "hmrec.data_fingerprint"
TAG_METRIC_NAME = "hmrec.metric_name"
TAG_HIGHER_IS_BETTER = "hmrec.higher_is_better"
TAG_DECISION = "hmrec.champion_decision"
METRIC_TAG_PREFIX = "metric."

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class RegistryError(LookupError):
    """A registry request that cannot be served: unknown model/version/alias, or bad input."""


@dataclass(frozen=True)
class RegisteredVersion:
    """What one registration produced, and what it did to the champion alias."""

    name: str
    version: int
    run_id: str
    model_uri: str
    metric_name: str
    metric_value: float
    champion: bool
    previous_champion: int | None
    decision: str
    seconds: float


@dataclass(frozen=True)
class VersionInfo:
    """One stored version as the registry sees it."""

    name: str
    version: int
    run_id: str | None
    model_uri: str
    aliases: tuple[str, ...]
    tags: dict[str, str] = field(repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics recorded at registration."""
        n = len(METRIC_TAG_PREFIX)
        return {k[n:]: float(v) for k, v in self.tags.items() if k.startswith(METRIC_TAG_PREFIX)}


class ModelRegistry:
    """hmrec's view of an MLflow tracking server + model registry at one URI.

    Construction does no I/O; the backend (for SQLite: the database file and its
    migrations, about two seconds the first time) is touched on first use.
    """

    def __init__(
        self,
        uri: str,
        experiment_name: str = DEFAULT_EXPERIMENT,
        artifact_location: str | None = None,
    ) -> None:
        self.uri = uri
        self.experiment_name = experiment_name
        self.artifact_location = (
            artifact_location if artifact_location is not None else default_artifact_location(uri)
        )
        self._client: Any = None
        self._experiment_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, experiment_name: str = DEFAULT_EXPERIMENT) -> ModelRegistry:
        """Registry at Settings' MLFLOW_TRACKING_URI, or the SQLite file under HOME_DIR."""
        return cls(tracking_uri(settings), experiment_name=experiment_name)

    def __repr__(self) -> str:
        return f"ModelRegistry(uri={self.uri!r}, experiment={self.experiment_name!r})"

    # --- plumbing ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The MlflowClient (tracking and registry both at ``uri``)."""
        if self._client is None:
            from mlflow import MlflowClient

            prepare_backend(self.uri)
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """Id of the experiment runs go to, created on first use (with our artifact folder)."""
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment_name, artifact_location=self.artifact_location
                    )
                except MlflowException:  # created meanwhile by another process
                    exp = self.client.get_experiment_by_name(self.experiment_name)
                    if exp is None:
                        raise
                    self._experiment_id = exp.experiment_id
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    @contextmanager
    def start_run(self, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> Iterator[Any]:
        """A run in this registry's experiment; ``register`` inside it logs into it.

        Use it to keep a training step's per-epoch curves (``mlflow.log_metric(k, v,
        step=epoch)``) and its registered models in one run.
        """
        import mlflow

        with using_uri(self.uri):
            with mlflow.start_run(
                experiment_id=self.experiment_id, run_name=run_name, tags=dict(tags or {})
            ) as run:
                yield run

    # --- registration -----------------------------------------------------------------
    def register(
        self,
        name: str,
        model: HmrecPyfunc,
        input_example: pd.DataFrame | pl.DataFrame,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        feature_view: Mapping[str, Any] | Any,
        data_fingerprint: str,
        metric_name: str,
        higher_is_better: bool = True,
        force: bool = False,
        run_id: str | None = None,
    ) -> RegisteredVersion:
        """Store ``model`` as the next version of ``name``; move ``champion`` if it earns it.

        The input example (first rows of the training data) is cut to the model's
        input columns, so the signature names exactly the raw features serving must send.

        ``metrics[metric_name]`` (a validation metric) decides the alias: the new version
        becomes champion when there is none, when it is at least as good as the current
        champion's value of the same metric, or when ``force``. The run is ``run_id``,
        else the active run (see :meth:`start_run`), else a new one. Input is checked
        before anything is written.
        """
        started = time.perf_counter()
        value = _check_inputs(name, model, metrics, metric_name, data_fingerprint)
        example = _example_frame(name, input_example, model.input_columns, model.numeric_columns)
        fv = _feature_view_dict(feature_view)
        output = model.predict(None, example)
        signature = _signature(example, output)

        version_tags = {
            TAG_FV_NAME: str(fv["name"]),
            TAG_FV_VERSION: str(fv["version"]),
            TAG_FV_COLUMNS: json.dumps(list(fv["columns"])),
            TAG_FINGERPRINT: data_fingerprint,
            TAG_METRIC_NAME: metric_name,
            TAG_HIGHER_IS_BETTER: str(bool(higher_is_better)).lower(),
            **{METRIC_TAG_PREFIX + k: repr(float(v)) for k, v in metrics.items()},
        }
        import mlflow

        with using_uri(self.uri), self._run(name, run_id) as run, tempfile.TemporaryDirectory() as tmp:
            artifacts = model.write_artifacts(Path(tmp))
            str_params = {k: _param_str(v) for k, v in params.items()}
            with _quiet_mlflow():
                info = mlflow.pyfunc.log_model(
                    name=name,
                    python_model=str(model.code_path),
                    artifacts=artifacts,
                    signature=signature,
                    input_example=example,
                    pip_requirements=model.pip_requirements(),
                    params=str_params or None,
                )
            self._log_to_run(name, run, str_params, metrics, fv, data_fingerprint, info.model_id)
            mv = self._create_version(name, info, run.info.run_id, version_tags)

        version = int(mv.version)
        promote, previous, decision = self._champion_decision(
            name, version, metric_name, value, higher_is_better, force
        )
        if promote:
            self.client.set_registered_model_alias(name, CHAMPION, str(version))
        self.client.set_model_version_tag(name, str(version), TAG_DECISION, decision)
        return RegisteredVersion(
            name=name,
            version=version,
            run_id=run.info.run_id,
            model_uri=f"models:/{name}/{version}",
            metric_name=metric_name,
            metric_value=value,
            champion=promote,
            previous_champion=previous,
            decision=decision,
            seconds=time.perf_counter() - started,
        )

    @contextmanager
    def _run(self, name: str, run_id: str | None) -> Iterator[Any]:
        import mlflow

        active = mlflow.active_run()
        if active is not None and (run_id is None or active.info.run_id == run_id):
            yield active
            return
        with mlflow.start_run(
            run_id=run_id,
            experiment_id=None if run_id else self.experiment_id,
            run_name=None if run_id else f"register-{name}",
            nested=active is not None,
        ) as run:
            yield run

    def _log_to_run(
        self,
        name: str,
        run: Any,
        params: Mapping[str, str],
        metrics: Mapping[str, float],
        fv: Mapping[str, Any],
        data_fingerprint: str,
        model_id: str,
    ) -> None:
        import mlflow

        # Two models of one run (query, candidate) share params; MLflow rejects re-logging a
        # param, so log only new ones. The model itself holds all of its params.
        existing = self.client.get_run(run.info.run_id).data.params
        new = {k: v for k, v in params.items() if k not in existing}
        if new:
            mlflow.log_params(new)
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=model_id)
        # Per-model keys: one run may hold models trained on different views.
        mlflow.set_tags(
            {
                f"hmrec.{name}.feature_view": f"{fv['name']}:{fv['version']}",
                f"hmrec.{name}.data_fingerprint": data_fingerprint,
            }
        )

    def _create_version(self, name: str, info: Any, run_id: str, tags: Mapping[str, str]) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                self.client.create_registered_model(name)
            except MlflowException as exc2:  # created meanwhile by another process
                if exc2.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        # A tracking server requires model_id with a models:/ source; the SQL store ignores it.
        return self.client.create_model_version(
            name, source=info.model_uri, run_id=run_id, tags=dict(tags), model_id=info.model_id
        )

    def _champion_decision(
        self,
        name: str,
        version: int,
        metric_name: str,
        value: float,
        higher_is_better: bool,
        force: bool,
    ) -> tuple[bool, int | None, str]:
        current = self.champion(name)
        if current is None:
            return True, None, f"promoted: first champion ({metric_name}={value:.6g})"
        if force:
            return True, current, f"promoted: forced over champion v{current}"
        tags = self.client.get_model_version(name, str(current)).tags or {}
        raw = tags.get(METRIC_TAG_PREFIX + metric_name)
        old = float(raw) if raw is not None else None
        if old is None:
            return (
                True,
                current,
                f"promoted: champion v{current} has no {metric_name} to compare "
                f"(new {metric_name}={value:.6g})",
            )
        better = value >= old if higher_is_better else value <= old
        relation = ">=" if higher_is_better else "<="
        if better:
            return (
                True,
                current,
                f"promoted: {metric_name}={value:.6g} {relation} champion v{current}'s {old:.6g}",
            )
        return (
            False,
            current,
            f"kept champion v{current}: {metric_name}={value:.6g} is worse than its {old:.6g}",
        )

    # --- lookups ----------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Names of all registered models, sorted."""
        return sorted(m.name for m in self.client.search_registered_models())

    def list_versions(self, name: str) -> list[int]:
        """Version numbers of ``name``, ascending."""
        return [v.version for v in self._versions(name)]

    def champion(self, name: str) -> int | None:
        """The version the ``champion`` alias points at, or None."""
        ver = (self._registered_model(name).aliases or {}).get(CHAMPION)
        return int(ver) if ver is not None else None

    def get_version(self, name: str, version: int | None = None, alias: str | None = None) -> VersionInfo:
        """One version by number or alias; neither: the champion, else the latest version."""
        if version is not None and alias is not None:
            raise RegistryError(f"give version or alias for '{name}', not both")
        versions = self._versions(name)
        if not versions:
            raise RegistryError(f"model '{name}' has no versions in registry {self.uri}")
        if alias is not None:
            for v in versions:
                if alias in v.aliases:
                    return v
            aliases = sorted({a for v in versions for a in v.aliases})
            raise RegistryError(
                f"model '{name}' has no alias '{alias}'; aliases: {', '.join(aliases) or 'none'}"
            )
        if version is None:
            for v in versions:
                if CHAMPION in v.aliases:
                    return v
            return versions[-1]
        for v in versions:
            if v.version == int(version):
                return v
        raise RegistryError(
            f"model '{name}' has no version {version}; versions: "
            f"{', '.join(str(v.version) for v in versions)}"
        )

    def best_version(self, name: str, metric: str, higher_is_better: bool = True) -> int:
        """Version with the best registered value of ``metric`` (ties: the newest)."""
        versions = self._versions(name)
        scored = [(v.metrics[metric], v.version) for v in versions if metric in v.metrics]
        if not scored:
            known = sorted({k for v in versions for k in v.metrics})
            raise RegistryError(
                f"no version of '{name}' has metric '{metric}'; metrics: {', '.join(known) or 'none'}"
            )
        if higher_is_better:
            return max(scored)[1]
        return min(scored, key=lambda s: (s[0], -s[1]))[1]

    def get_feature_view(self, name: str, version: int | None = None, alias: str | None = None) -> dict[str, Any]:
        """Lineage of a version: the feature view (name, version, columns) and data fingerprint."""
        info = self.get_version(name, version=version, alias=alias)
        fv_version: Any = info.tags.get(TAG_FV_VERSION)
        if isinstance(fv_version, str) and fv_version.isdigit():
            fv_version = int(fv_version)
        return {
            "name": info.tags.get(TAG_FV_NAME),
            "version": fv_version,
            "columns": json.loads(info.tags.get(TAG_FV_COLUMNS, "[]")),
            "data_fingerprint": info.tags.get(TAG_FINGERPRINT),
            "model": name,
            "model_version": info.version,
            "run_id": info.run_id,
        }

    def model_uri(self, name: str, version: int | None = None, alias: str | None = None) -> str:
        """``models:/<name>/<n>`` of the resolved version (checked to exist)."""
        return self.get_version(name, version=version, alias=alias).model_uri

    def load(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """The stored model as an MLflow PyFuncModel: ``.predict(raw_features_df)``.

        Neither version nor alias: the champion, else the latest version.
        ``.unwrap_python_model()`` gives the hmrec wrapper (e.g. RankingPyfunc).
        """
        import mlflow.pyfunc

        uri = self.model_uri(name, version=version, alias=alias)
        with using_uri(self.uri), _quiet_mlflow():
            return mlflow.pyfunc.load_model(uri)

    def _registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            known = self.list_models()
            raise RegistryError(
                f"unknown model '{name}' in registry {self.uri}; "
                f"registered models: {', '.join(known) or 'none'}"
            ) from None

    def _versions(self, name: str) -> list[VersionInfo]:
        # search_model_versions leaves ModelVersion.aliases empty on the SQL store; the
        # registered model's alias map is authoritative.
        aliases: dict[int, list[str]] = {}
        for alias, ver in (self._registered_model(name).aliases or {}).items():
            aliases.setdefault(int(ver), []).append(alias)
        found = self.client.search_model_versions(f"name = '{name}'")
        infos = [_version_info(mv, aliases.get(int(mv.version), ())) for mv in found]
        return sorted(infos, key=lambda v: v.version)


# --- helpers ----------------------------------------------------------------------------
def _version_info(mv: Any, aliases: Sequence[str]) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id,
        model_uri=f"models:/{mv.name}/{mv.version}",
        aliases=tuple(sorted(aliases)),
        tags=dict(mv.tags or {}),
    )


def _example_frame(
    name: str, example: pd.DataFrame | pl.DataFrame, columns: list[str], numeric: list[str]
) -> pd.DataFrame:
    """The example cut to the model's input columns (so the signature asks for nothing else).

    Integer columns the model reads as numbers are declared double: a missing value
    turns a pandas integer column into float, which MLflow's schema check refuses for a
    ``long`` column (MLflow's own advice). Smaller integer inputs (int8/16/32) still
    pass a ``double`` column; int64 does not (MLflow calls that conversion unsafe).
    """
    if isinstance(example, pl.DataFrame):
        example = example.head(MAX_EXAMPLE_ROWS).to_pandas()
    if not isinstance(example, pd.DataFrame):
        raise RegistryError(
            f"input_example for '{name}' must be a pandas or polars DataFrame, "
            f"got {type(example).__name__}"
        )
    if len(example) == 0:
        raise RegistryError(f"input_example for '{name}' has no rows")
    missing = [c for c in columns if c not in example.columns]
    if missing:
        raise RegistryError(
            f"input_example for '{name}' lacks the model's input column(s) {missing}; "
            f"it has {list(example.columns)}"
        )
    out = example.head(MAX_EXAMPLE_ROWS)[columns].reset_index(drop=True)
    for col in numeric:
        if pd.api.types.is_integer_dtype(out[col].dtype) or pd.api.types.is_bool_dtype(out[col].dtype):
            out[col] = out[col].astype("float64")
    return out


def _feature_view_dict(fv: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Accept a dict or any object with name/version/columns (e.g. the store's FeatureView)."""
    get = fv.get if isinstance(fv, Mapping) else lambda k: getattr(fv, k, None)
    out = {k: get(k) for k in ("name", "version", "columns")}
    missing = [k for k, v in out.items() if v is None]
    if missing:
        raise RegistryError(f"feature_view needs name, version and columns; missing: {missing}")
    cols = out["columns"]
    if isinstance(cols, str) or not isinstance(cols, Sequence) or not all(isinstance(c, str) for c in cols):
        raise RegistryError(f"feature_view columns must be a list of column names, got {cols!r}")
    out["columns"] = list(cols)
    return out


def _check_inputs(
    name: str, model: Any, metrics: Mapping[str, float], metric_name: str, fingerprint: str
) -> float:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(f"model name {name!r} must be letters, digits, '_', '.', '-'")
    if not isinstance(model, HmrecPyfunc):
        raise RegistryError(
            f"model for '{name}' must be a QueryPyfunc, CandidatePyfunc or RankingPyfunc "
            f"(hmrec.registry), got {type(model).__name__}"
        )
    if metric_name not in metrics:
        raise RegistryError(
            f"metric_name '{metric_name}' is not among the metrics of '{name}': {sorted(metrics)}"
        )
    for key, val in metrics.items():
        try:
            num = float(val)
        except (TypeError, ValueError):
            raise RegistryError(f"metric '{key}' of '{name}' is not a number: {val!r}") from None
        if not math.isfinite(num):
            raise RegistryError(f"metric '{key}' of '{name}' is not finite: {val!r}")
    if not fingerprint or not isinstance(fingerprint, str):
        raise RegistryError(f"data_fingerprint for '{name}' must be a non-empty string")
    return float(metrics[metric_name])


def _param_str(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _signature(example: pd.DataFrame, output: Any) -> Any:
    from mlflow.models import infer_signature

    with warnings.catch_warnings():
        # The hint about integer columns and missing values is about the example, not a fault.
        warnings.simplefilter("ignore", UserWarning)
        return infer_signature(example, output)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's per-call INFO chatter during log/load (errors still raise)."""
    import logging

    loggers = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models", "mlflow.store")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
