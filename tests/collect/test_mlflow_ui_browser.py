"""MLflow's own UI in headless Debian Chromium: a child run's metrics, logged as ``<group>/<key>``, appear in MLflow
3.17's "Model metrics" tab as one section per group (measure, diag, gen, time, train, curve) holding exactly that
group's metrics, instead of 60-odd charts side by side; and the experiment link flatlas writes
(``collect.mlflow_ui.experiment_url``) opens on the runs table, not on the GenAI overview (traces, "Detect Issues").
The screenshots are saved in the test's temporary folder for a human to look at."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.analyze.report.conftest import CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SPEC = {
    "name": "ui",
    "measures": ["norms", {"name": "log_volume", "options": {"max_iter": 20}}],  # log_volume: diag/* outputs
    "curve_measures": ["norms"],
    "base": {
        "data": {"dataset": "digits", "n_train": 40, "n_test": 20, "binary": "low_high"},
        "model": {"arch": "fcn", "width": 8, "depth": 1},
        "optim": {"lr": 0.1, "batch_size": 20},
        "stop": {"max_epochs": 2},
    },
}
GROUPS = {"measure", "diag", "gen", "time", "train", "curve"}
SERVER_START_S = 180  # mlflow ui imports the server and migrates nothing (the store is the test's migrated copy)

# Section headers of the Model metrics tab: a name element followed by its "(count)" element.
SECTIONS_JS = """() => Array.from(document.querySelectorAll('div'))
  .filter(d => /^\\(\\d+\\)$/.test(d.textContent) && d.previousElementSibling && d.children.length === 0)
  .map(d => [d.previousElementSibling.textContent, +d.textContent.slice(1, -1)])"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_metrics_sections(playwright, chromium: Path, url: str, shots: Path) -> dict[str, int]:
    """Open a run's Model metrics tab; return {section name: number of charts}; save two screenshots."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_function(f"() => ({SECTIONS_JS})().length >= {len(GROUPS)}", timeout=90_000)
            sections = dict(page.evaluate(SECTIONS_JS))
            page.screenshot(path=str(shots / "mlflow-run-model-metrics.png"), timeout=60_000)
            page.get_by_text("diag", exact=True).first.scroll_into_view_if_needed()  # the diagnostics section
            page.screenshot(path=str(shots / "mlflow-run-diag-section.png"), timeout=60_000)
            return sections
        finally:
            browser.close()


def experiment_page(playwright, chromium: Path, url: str, run_name: str, shots: Path) -> str:
    """Open an experiment link as a fresh browser would (GenAI is the UI's default view); return the page's text once
    the runs table shows ``run_name``; save a screenshot."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_text("Run Name", exact=True).first.wait_for(timeout=90_000)
            page.get_by_text(run_name, exact=False).first.wait_for(timeout=90_000)
            page.screenshot(path=str(shots / "mlflow-experiment-runs-table.png"), timeout=60_000)
            return page.inner_text("body")
        finally:
            browser.close()


def test_run_page_groups_metrics_by_kind(mlflow_uri: str, tmp_path: Path, chromium_executable: Path) -> None:
    import playwright.sync_api as playwright  # importable: the chromium_executable fixture checked it
    from mlflow import MlflowClient

    from collect.mlflow_ui import experiment_url
    from collect.runner import run_sweep
    from collect.tags import EXPERIMENT_KIND_TAG, MODEL_TRAINING
    from collect.sweep import expand, parse_spec

    summary = run_sweep(expand(parse_spec(SPEC, "ui.toml")), sweep="ui", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 1
    run_id = summary.outcomes[0].run_id
    metrics = MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).data.metrics
    assert {k.split("/", 1)[0] for k in metrics} == GROUPS, sorted(metrics)
    # The page charts only metrics with a finite value (pac_bayes_bound is NaN when the training error is not zero).
    logged = Counter(k.split("/", 1)[0] for k, v in metrics.items() if math.isfinite(v))

    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", mlflow_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path, env=env,
    )
    try:
        deadline = time.time() + SERVER_START_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, f"mlflow ui did not start (exit code {server.poll()})"
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/#/experiments/{summary.experiment_id}/runs/{run_id}/model-metrics"
        # Its own thread: the report's browser tests may hold a session-wide Playwright (an event loop) in this one.
        exp_url = experiment_url(f"http://127.0.0.1:{port}", summary.experiment_id)
        client = MlflowClient(tracking_uri=mlflow_uri)
        parent_id = client.get_run(run_id).data.tags["mlflow.parentRunId"]
        run_name = client.get_run(parent_id).info.run_name  # the table's top row: child runs are nested under it
        with ThreadPoolExecutor(1) as pool:
            sections = pool.submit(model_metrics_sections, playwright, chromium_executable, url, tmp_path).result()
            experiment_text = pool.submit(experiment_page, playwright, chromium_executable, exp_url, run_name, tmp_path).result()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group (uvicorn and its worker)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    assert {g: sections.get(g) for g in GROUPS} == dict(logged), sections
    assert (tmp_path / "mlflow-run-model-metrics.png").stat().st_size > 10_000
    # the experiment opens on its runs table (the GenAI overview would show traces and "Detect Issues" instead)
    assert "matching runs" in experiment_text and "Detect Issues" not in experiment_text, experiment_text[:1000]
    assert (tmp_path / "mlflow-experiment-runs-table.png").stat().st_size > 10_000
    tags = MlflowClient(tracking_uri=mlflow_uri).get_experiment(summary.experiment_id).tags
    assert tags.get(EXPERIMENT_KIND_TAG) == MODEL_TRAINING
