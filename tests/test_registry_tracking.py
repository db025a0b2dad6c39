"""Where the registry lives: URIs, artifact folders, and MLflow's process-wide URI state."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow

from hmrec.config import Settings
from hmrec.registry import ModelRegistry, default_artifact_location, tracking_uri, using_uri
from hmrec.registry.tracking import sqlite_path


def test_default_uri_is_sqlite_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(HOME_DIR=tmp_path / "home")
    uri = tracking_uri(settings)
    assert uri == f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').resolve()}"
    assert sqlite_path(uri) == (tmp_path / "home" / "mlflow.db").resolve()
    assert default_artifact_location(uri) == (tmp_path / "home" / "mlartifacts").resolve().as_uri()
    reg = ModelRegistry.from_settings(settings)
    assert reg.uri == uri and reg.artifact_location.endswith("/home/mlartifacts")


def test_server_uri_is_used_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    settings = Settings(HOME_DIR=tmp_path)
    assert tracking_uri(settings) == "http://mlflow.internal:5000"
    reg = ModelRegistry.from_settings(settings)
    assert reg.uri == "http://mlflow.internal:5000"
    assert reg.artifact_location is None  # the server decides


def test_relative_sqlite_uri():
    assert sqlite_path("sqlite:///rel/mlflow.db") == Path("rel/mlflow.db")
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u@h/db") is None


def test_using_uri_restores_mlflow_state_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = mlflow.get_tracking_uri()
    inner = f"sqlite:///{tmp_path / 'x.db'}"
    with using_uri(inner):
        assert mlflow.get_tracking_uri() == inner
        assert mlflow.get_registry_uri() == inner
    assert mlflow.get_tracking_uri() == before
    # MLflow writes the env var on set_tracking_uri; left behind it would redirect Settings().
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert Settings(HOME_DIR=tmp_path / "h").mlflow_uri.endswith(str((tmp_path / "h" / "mlflow.db").resolve()))
