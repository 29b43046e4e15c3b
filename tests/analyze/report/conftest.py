"""Report fixtures: a planted 122-run ledger with every frame (computed by analyze.stats once per session), a
10,000-run ledger, the reports written from them, and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_fixtures lives beside this file; tests/ is no package

import report_fixtures as rf  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
@pytest.fixture(scope="session")
def small_ledger() -> pl.DataFrame:
    return rf.report_ledger()


@pytest.fixture(scope="session")
def small_frames(small_ledger: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return rf.full_frames(small_ledger, resamples=50)


@pytest.fixture(scope="session")
def small_report(small_ledger: pl.DataFrame, small_frames: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from analyze.report import write_report

    return write_report(small_ledger, small_frames, rf.meta_for(small_ledger), tmp_path_factory.mktemp("report") / "small.html")


@pytest.fixture(scope="session")
def big_ledger() -> pl.DataFrame:
    return rf.report_ledger(n_runs=10_000)


@pytest.fixture(scope="session")
def big_report(big_ledger: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10,000 runs: ranking (no bootstrap), every target, 40,000 sign-error environments, curves of every run."""
    from analyze.report import write_report
    from analyze.stats import correlations
    from analyze.stats.ranking import rank_frame

    corr = correlations(big_ledger, resamples=0)
    frames = {
        "correlations": corr,
        "rank": rank_frame(corr.filter(pl.col("target") == "gen.gap_acc")),
        "sign_error": rf.sign_error_summary(big_ledger),
        "sign_error_envs": rf.many_environments(big_ledger, 40_000),
        "curves": rf.curves_frame(big_ledger, steps=10),
    }
    return write_report(big_ledger, frames, rf.meta_for(big_ledger), tmp_path_factory.mktemp("report") / "big.html")


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory, chromium_executable: Path) -> Iterator[Any]:
    """A persistent Chromium context on a fresh user-data-dir (chromium found by tests/conftest.py: skipped where it
    is missing, failed instead under FLATLAS_REQUIRE_BROWSER=1)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(chromium_executable),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()
