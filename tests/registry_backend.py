"""Fresh SQLite MLflow registries for tests, without paying MLflow's migrations each time.

Creating an MLflow SQLite database runs ~50 schema migrations (seconds, more on a busy
machine). A test process makes one empty, migrated database and copies the file for
every registry it needs: each copy is a complete, independent backend.
(Not a test module itself.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hmrec.registry import ModelRegistry

_TEMPLATE: dict[str, Path] = {}


def fresh_registry(tmp_path_factory: pytest.TempPathFactory, name: str) -> ModelRegistry:
    """A registry on its own new SQLite file under a fresh temporary folder."""
    template = _TEMPLATE.get("db")
    if template is None or not template.exists():
        folder = tmp_path_factory.mktemp("mlflow_template")
        template = folder / "mlflow.db"
        from mlflow import MlflowClient

        uri = f"sqlite:///{template}"
        MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()  # runs migrations
        _TEMPLATE["db"] = template
    home = tmp_path_factory.mktemp(name)
    shutil.copyfile(template, home / "mlflow.db")
    return ModelRegistry(f"sqlite:///{home / 'mlflow.db'}")
