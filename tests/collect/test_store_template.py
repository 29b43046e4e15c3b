"""A new SQLite store copied from the migrated template is the store MLflow would have migrated itself."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from collect.store_template import build_template, create_from_template, template_path
from collect.tracking import ensure_store


def _schema(db: Path) -> list[tuple[str, list[str]]]:
    """Every table and index with its CREATE statement's lines sorted: MLflow's own migrations emit a table's
    constraints in an order that differs between processes (string hashing), so only the set of lines is fixed."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        rows = con.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    return sorted((name, sorted(line.strip().rstrip(",") for line in sql.splitlines())) for name, sql in rows)


def _rows(db: Path, query: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute(query).fetchall()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store MLflow created and migrated itself (the reference), opened from its own folder."""
    db = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


def test_a_store_from_the_template_equals_one_mlflow_migrated(migrated: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    store = tmp_path / "work" / "mlflow.db"
    store.parent.mkdir()
    monkeypatch.chdir(store.parent)  # the default experiment's artifact folder is ./mlruns of the opening process
    assert create_from_template(store, cache)
    assert template_path(cache).exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    default = client.get_experiment("0")  # MLflow inserted experiment 0 itself when it opened the copy
    assert default.name == "Default"
    assert default.artifact_location == str(store.parent.resolve() / "mlruns" / "0")
    assert _schema(store) == _schema(migrated)
    for query in ("SELECT * FROM alembic_version", "SELECT name FROM workspaces",
                  "SELECT experiment_id, name, lifecycle_stage FROM experiments"):
        assert _rows(store, query) == _rows(migrated, query), query
    # the copy takes experiments and runs like any store, and the next experiment id is 1 as in a fresh store
    exp = client.create_experiment("x")
    assert exp == "1"
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_ensure_store_creates_a_new_store_from_the_template(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the template lives in ./data/cache
    store = tmp_path / "s" / "mlflow.db"
    client = ensure_store(f"sqlite:///{store}")
    assert template_path().exists() and store.exists()
    assert [e.experiment_id for e in client.search_experiments()] == ["0"]
    assert not list(store.parent.glob(".*partial"))  # no half-copied file left beside the store


def test_an_existing_store_is_never_replaced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mlflow.db"
    client = ensure_store(f"sqlite:///{store}")
    client.create_experiment("keep-me")
    client = ensure_store(f"sqlite:///{store}")
    assert "keep-me" in {e.name for e in client.search_experiments()}


def test_an_unusable_cache_falls_back_to_mlflow_migrating_the_store(tmp_path: Path, monkeypatch) -> None:
    """The cache folder cannot be made (a file stands in its place): no template, no store file; ``ensure_store``
    then has MLflow migrate the store itself."""
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    store = tmp_path / "mlflow.db"
    assert not create_from_template(store, blocker / "cache")
    assert not store.exists()
    monkeypatch.chdir(tmp_path)  # ensure_store's default cache is ./data/cache, under the file
    client = ensure_store(f"sqlite:///{store}")
    assert [e.experiment_id for e in client.search_experiments()] == ["0"]


def test_a_template_that_cannot_be_copied_leaves_no_store(tmp_path: Path) -> None:
    """The store's folder cannot take the copy: nothing is left under the store's name (MLflow then reports it)."""
    cache = tmp_path / "cache"
    build_template(template_path(cache))
    store = tmp_path / "missing-folder" / "mlflow.db"
    assert not create_from_template(store, cache)
    assert not store.exists()
