"""A new SQLite store as a copy of an empty, already migrated one: MLflow's schema migration (≈ 2–5 s of alembic
steps) is paid once per machine and MLflow version, not by every invocation that starts a new store.

The template is ``<cache_dir>/mlflow-store-template-<mlflow version>.db``: a store MLflow created and migrated,
with its default experiment (id 0) deleted. Opening the copy, MLflow finds every table at the head revision and no
experiment 0, so it inserts that experiment itself, with this invocation's artifact location and time, exactly as
it does in a store it migrated. Everything else a fresh store holds (the alembic revision, the default workspace)
is the same in every fresh store. A template that cannot be built or copied (a read-only cache folder, a full disk)
is skipped with no message: the store is then created and migrated by MLflow as usual.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

DEFAULT_CACHE_DIR = Path("data/cache")


def template_path(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Where this MLflow version's template lives."""
    import mlflow

    return Path(cache_dir) / f"mlflow-store-template-{mlflow.__version__}.db"


def build_template(path: Path) -> Path:
    """Create the template at ``path``: MLflow creates and migrates a store in a temporary file, experiment 0 is
    deleted, and the file is moved into place atomically (concurrent builders each move a complete file)."""
    from mlflow import MlflowClient

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".template-") as tmp:
        db = Path(tmp) / "store.db"
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        client.search_experiments(max_results=1)
        with contextlib.closing(sqlite3.connect(db)) as con, con:
            con.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
            con.execute("DELETE FROM experiments WHERE experiment_id = 0")
        os.replace(db, path)
    return path


def create_from_template(db: Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> bool:
    """Put a copy of the template at ``db`` (which must not exist; the caller holds the store's lock); True when it
    did, False when no template could be built or copied (MLflow then migrates ``db`` itself)."""
    partial = db.with_name(f".{db.name}.partial")
    try:
        template = template_path(cache_dir)
        if not template.exists():
            build_template(template)
        shutil.copyfile(template, partial)
        os.replace(partial, db)  # never a half-copied store under the store's name
        return True
    except (OSError, sqlite3.Error):
        with contextlib.suppress(OSError):
            partial.unlink()
        return False
