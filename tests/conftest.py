"""Shared fixtures: one template MLflow SQLite store per session (a fresh store migrates its schema in ~5 s),
copied for every test that needs an empty store; and the browser the report's browser tests drive.

Browser: Debian's ``chromium`` found on PATH exactly as ``.ci/run`` finds it (``command -v chromium``, i.e.
``shutil.which``), driven by Playwright. Where either is missing the browser tests skip, unless the environment
variable ``FLATLAS_REQUIRE_BROWSER=1`` is set (``.ci/run`` sets it): then they fail, so CI cannot stay green
without having run them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_BROWSER = "FLATLAS_REQUIRE_BROWSER"


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


# --- the browser of the report's browser tests -------------------------------------------------------------------


def find_chromium() -> Path | None:
    """The ``chromium`` executable on PATH, as ``.ci/run``'s ``command -v chromium`` finds it; None when absent."""
    found = shutil.which("chromium")
    return Path(found) if found else None


def browser_unavailable(reason: str) -> NoReturn:
    """Skip the calling test, or fail it when ``FLATLAS_REQUIRE_BROWSER=1`` (CI must run the browser tests)."""
    if os.environ.get(REQUIRE_BROWSER, "") == "1":
        pytest.fail(f"{reason}; {REQUIRE_BROWSER}=1 requires the browser tests to run", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's chromium, with Playwright importable; skips (or fails under FLATLAS_REQUIRE_BROWSER=1) otherwise."""
    path = find_chromium()
    if path is None:
        browser_unavailable("chromium is not on PATH (`command -v chromium` finds nothing; .ci/run installs it: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        browser_unavailable("the playwright package is not installed (pip install -e '.[test]')")
    return path
