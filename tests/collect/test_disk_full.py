"""A store that stops taking writes mid-sweep (a full disk): one line naming the store and what failed, a non-zero
exit, every run finished before kept, the rest re-run by the next invocation.

Two ways: a write error raised at MLflow's artifact upload (fast, everywhere), and a real full disk, a small tmpfs
mounted for the test (root only; slow: it trains until the disk fills)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from collect.cli import main
from tests.collect.test_spec_values import SPEC

GRID = '[grid]\n"optim.lr" = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]\n'


def runs_by_status(uri: str, experiment: str = "values") -> dict[str, list]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    out: dict[str, list] = {}
    for run in client.search_runs([exp.experiment_id], "tags.`flatlas.kind` = 'config'"):
        out.setdefault(run.info.status, []).append(run)
    return out


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_write_error_mid_sweep_is_one_line_exit_2_and_the_next_invocation_resumes(mlflow_uri, tmp_path, capsys, monkeypatch):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + GRID)
    argv = ["--config", str(spec), "--tracking-uri", mlflow_uri, "--workers", "1", "--no-progress"]
    uploads = []
    original = MlflowClient.log_artifacts

    def fills_up(self, run_id, *args, **kwargs):
        uploads.append(run_id)
        if len(uploads) >= 3:  # the third run's artifacts no longer fit
            raise OSError(28, "No space left on device")
        return original(self, run_id, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_artifacts", fills_up)
    code = main(argv)
    out, err = capsys.readouterr()
    line = one_line(err)
    assert code == 2 and out == ""
    assert line.startswith(f"error: the store {mlflow_uri} could not take a write: the disk is full (OSError: [Errno 28] "
                           "No space left on device)"), line
    assert "re-run the same command to resume" in line
    runs = runs_by_status(mlflow_uri)
    assert len(runs["FINISHED"]) == 2 and len(runs["FAILED"]) == 1 and "RUNNING" not in runs  # nothing more started
    assert all("measure/margin_mean" in r.data.metrics for r in runs["FINISHED"])  # finished runs kept whole
    assert len(uploads) == 3  # no retry of a write the store cannot take
    monkeypatch.setattr(MlflowClient, "log_artifacts", original)  # space freed
    assert main(argv) == 0
    assert "4 finished, 0 failed, 2 already done" in capsys.readouterr().out
    assert len(runs_by_status(mlflow_uri)["FINISHED"]) == 6


@contextlib.contextmanager
def small_tmpfs(folder: Path, kilobytes: int):
    folder.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (the simulated write error above covers the rest)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # lazily: this process may still hold the database open


@pytest.mark.slow
def test_a_full_tmpfs_mid_sweep_is_one_line_and_loses_no_finished_run(mlflow_template, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + GRID)
    size_kb = mlflow_template.stat().st_size // 1024 + 150  # the empty store and room for two or three runs
    with small_tmpfs(tmp_path / "disk", size_kb) as disk:
        shutil.copy(mlflow_template, disk / "mlflow.db")
        uri = f"sqlite:///{disk / 'mlflow.db'}"
        argv = [sys.executable, "-m", "collect", "--config", str(spec), "--tracking-uri", uri, "--workers", "1", "--no-progress"]
        repo = Path(__file__).resolve().parents[2]
        done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=600)
        line = one_line(done.stderr)
        assert done.returncode == 2 and line.startswith(f"error: the store {uri} could not take a write: the disk is full"), line
        runs = runs_by_status(uri)
        finished = len(runs.get("FINISHED", []))
        assert 1 <= finished < 6 and all("measure/margin_mean" in r.data.metrics for r in runs["FINISHED"])
        print(f"disk full after {finished} finished runs: {line}")
        subprocess.run(["mount", "-o", f"remount,size={size_kb + 2048}k", str(disk)], check=True)  # space freed
        again = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and f"{6 - finished} finished, 0 failed, {finished} already done" in again.stdout, again
