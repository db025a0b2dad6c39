"""Where MLflow keeps runs, models and artifacts, and how we point MLflow at it.

The default is an embedded SQLite database (``sqlite:///<HOME>/mlflow.db``) with
artifacts in a folder beside it (``<HOME>/mlartifacts``): nothing to start, and
MLflow's file store is deprecated. Any other URI (an ``http(s)://`` tracking server,
``postgresql://``, ...) is used unchanged, and the server decides where artifacts go.

MLflow's fluent API (``mlflow.start_run``, ``mlflow.pyfunc.log_model``) reads a
process-wide URI. Several registries can live in one process (tests, tools), so every
registry operation runs inside :func:`using_uri`, which sets the URI for its duration
and restores the previous one afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from hmrec.config import Settings

#: Experiment that holds hmrec's training runs unless told otherwise.
DEFAULT_EXPERIMENT = "hmrec"

# MLflow draws a progress bar for every artifact download; in a CLI pipeline with its own
# Rich progress bars those are noise. A user's explicit setting wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def tracking_uri(settings: Settings) -> str:
    """Tracking (and registry) URI from Settings: MLFLOW_TRACKING_URI or the local SQLite file."""
    return settings.mlflow_uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other backend."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    # sqlite:////abs/path -> path '//abs/path'; sqlite:///rel -> '/rel'
    raw = unquote(parsed.path)
    path = raw[1:] if raw.startswith("/") else raw
    if not path or path == ":memory:":
        return None
    return Path(path)


def default_artifact_location(uri: str) -> str | None:
    """Artifact root for a new experiment: ``<db folder>/mlartifacts`` for SQLite, else None.

    Without an explicit location MLflow puts artifacts of a SQLite-backed experiment in
    ``./mlruns`` relative to the current directory, which scatters them wherever a
    command happens to be run. A tracking server picks its own location (None).
    """
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / "mlartifacts").as_uri()


def prepare_backend(uri: str) -> None:
    """Create the folder that will hold a SQLite database (MLflow creates the file itself)."""
    db = sqlite_path(uri)
    if db is not None:
        db.resolve().parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def using_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri`` for the block.

    ``mlflow.set_tracking_uri`` also writes the MLFLOW_TRACKING_URI environment
    variable, which Settings reads; left behind, it would silently redirect every later
    Settings() in the process to this registry. Both the module state and the
    environment are restored on exit.
    """
    import mlflow
    from mlflow.tracking import _model_registry, _tracking_service

    saved_env = {k: os.environ.get(k) for k in _URI_ENV_VARS}
    old_tracking = _tracking_service.utils._tracking_uri
    old_registry = _model_registry.utils._registry_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_tracking)
        _model_registry.utils._registry_uri = old_registry
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_URI_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
