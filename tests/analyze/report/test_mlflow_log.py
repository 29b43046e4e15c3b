"""The report is logged as an artifact of the experiment's most recent parent (sweep) run."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyze.report import log_report_to_mlflow


def _parent(client, exp_id: str, start: int) -> str:
    return client.create_run(exp_id, start_time=start, tags={"flatlas.kind": "sweep"}).info.run_id


def test_logs_to_the_newest_parent_run(mlflow_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp_id = client.create_experiment("sweep-a")
    old = _parent(client, exp_id, 1_000)
    new = _parent(client, exp_id, 2_000)
    child = client.create_run(exp_id, start_time=3_000, tags={"flatlas.kind": "config", "mlflow.parentRunId": new}).info.run_id
    report = tmp_path / "sweep-a.html"
    report.write_text("<!DOCTYPE html><p>report</p>", encoding="utf-8")

    assert log_report_to_mlflow(report, mlflow_uri, "sweep-a") == new
    assert [a.path for a in client.list_artifacts(new, "report")] == ["report/sweep-a.html"]
    assert client.list_artifacts(old) == [] and client.list_artifacts(child) == []
    local = client.download_artifacts(new, "report/sweep-a.html", str(tmp_path / "back"))
    assert Path(local).read_text(encoding="utf-8") == "<!DOCTYPE html><p>report</p>"


def test_nothing_to_log_to(mlflow_uri: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp_id = client.create_experiment("imported")
    client.create_run(exp_id, tags={"flatlas.kind": "config"})  # runs, but no sweep parent
    report = tmp_path / "r.html"
    report.write_text("x", encoding="utf-8")
    assert log_report_to_mlflow(report, mlflow_uri, "imported") is None
    assert log_report_to_mlflow(report, mlflow_uri, "no-such-experiment") is None
    assert log_report_to_mlflow(report, mlflow_uri, None) is None
    with pytest.raises(FileNotFoundError, match="write it first"):
        log_report_to_mlflow(tmp_path / "missing.html", mlflow_uri, "imported")
