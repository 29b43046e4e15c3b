"""Shared fixtures: one template MLflow SQLite store per session (a fresh store migrates its schema in ~5 s),
copied for every test that needs an empty store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from collect.tracking import ensure_store

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    ensure_store(f"sqlite:///{path}")
    return path


@pytest.fixture
def mlflow_uri(mlflow_template: Path, tmp_path: Path) -> str:
    """A fresh, already migrated SQLite store in this test's temporary folder (artifacts beside it)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(mlflow_template, db)
    return f"sqlite:///{db}"
