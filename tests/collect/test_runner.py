"""Sweeps against a real (temporary) MLflow store: layout, resume after an interruption, crashes, divergence."""

from __future__ import annotations

import collections
import os

import pytest
from mlflow import MlflowClient

from collect import tracking
from collect.runner import run_sweep
from collect.sweep import expand, parse_spec

TINY = {
    "name": "tiny",
    "seeds": [0],
    "measures": ["margins", "norms"],
    "base": {
        "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 8, "depth": 1},
        "optim": {"lr": 0.1, "batch_size": 20},
        "stop": {"max_epochs": 2},
    },
    "grid": {"optim.batch_size": [10, 60], "model.dropout": [0.0, 0.2]},
}


def runs_of(spec: dict = TINY):
    return expand(parse_spec(spec, "tiny.toml"))


def children(uri: str, experiment: str = "tiny"):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client, exp, tracking.child_runs(client, exp.experiment_id)


def test_sweep_logs_parent_children_params_metrics_curves_artifacts(mlflow_uri):
    runs = runs_of()
    summary = run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 4 and summary.failed == 0
    client, exp, kids = children(mlflow_uri)
    assert len(kids) == 4 and {k.info.status for k in kids} == {"FINISHED"}
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["runs/finished"] == 4
    run = kids[0]
    assert run.data.tags["mlflow.parentRunId"] == summary.parent_run_id
    assert {"sweep", "config_hash", "intervention", "code_version"} <= set(run.data.tags)
    assert run.data.params["optim.optimizer"] == "sgd" and "data.n_train" in run.data.params
    for key in ("gen/test_acc", "gen/gap_acc", "measure/margin_mean", "measure/l2_norm", "time/margins", "time/norms"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run.info.run_id, "curve/train_loss")
    assert len(history) >= 2 and sorted(m.step for m in history) == [m.step for m in sorted(history, key=lambda m: m.step)]
    files = {f.path for f in client.list_artifacts(run.info.run_id)} | {f.path for f in client.list_artifacts(run.info.run_id, "per_sample")}
    assert {"config.json", "per_sample/margins.parquet"} <= files
    assert len(client.get_run(run.info.run_id).inputs.dataset_inputs) == 2


def test_resume_after_ctrl_c_completes_exactly_the_missing_runs(mlflow_uri, monkeypatch):
    runs = runs_of()
    import collect.runner as runner

    calls = collections.Counter()

    def interrupt_third(real):
        def wrapped(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return wrapped

    with monkeypatch.context() as patch:  # both training paths of run_one
        patch.setattr(runner, "train", interrupt_third(runner.train))
        patch.setattr(runner, "train_alone", interrupt_third(runner.train_alone))
        with pytest.raises(KeyboardInterrupt):
            run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    _, _, kids = children(mlflow_uri)
    assert sorted(k.info.status for k in kids) == ["FINISHED", "FINISHED", "KILLED"]

    summary = run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.skipped == 2 and summary.finished == 2
    _, _, kids = children(mlflow_uri)
    finished = collections.Counter(k.data.tags["config_hash"] for k in kids if k.info.status == "FINISHED")
    assert set(finished) == {r.config_hash for r in runs} and set(finished.values()) == {1}
    # a third invocation has nothing left to do
    assert run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False).skipped == 4


def test_crashed_run_left_running_is_closed_and_rerun(mlflow_uri):
    runs = runs_of()[:2]
    client = tracking.ensure_store(mlflow_uri)
    exp_id = tracking.get_or_create_experiment(client, "tiny", mlflow_uri)
    crashed = tracking.start_child(client, exp_id, None, runs[0].config.to_dict(), {tracking.TAG_HASH: runs[0].config_hash}, "crashed")
    summary = run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 2
    stale = client.get_run(crashed)
    assert stale.info.status == "FAILED" and "interrupted" in stale.data.tags["failure_reason"]


def test_diverged_run_is_failed_with_reason_and_sweep_continues(mlflow_uri):
    spec = {**TINY, "grid": {}, "zip": [{"optim.lr": [0.1, 1e12], "optim.batch_size": [20, 20]}]}
    summary = run_sweep(runs_of(spec), sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 1 and summary.failed == 1
    _, _, kids = children(mlflow_uri)
    failed = [k for k in kids if k.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["failure_reason"].startswith("diverged")


def test_measure_skip_is_logged_as_tag(mlflow_uri, monkeypatch):
    from collect.measures import registry as reg
    from collect.measures.context import MeasureSkipped
    from collect.measures.registry import Measure

    def needs_binary(ctx):
        raise MeasureSkipped("only for binary tasks")

    fake = dict(reg.registry()) | {"needs_binary": Measure("needs_binary", needs_binary)}
    monkeypatch.setattr(reg, "registry", lambda: fake)
    spec = {**TINY, "grid": {}, "measures": ["needs_binary"]}
    run_sweep(runs_of(spec), sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    _, _, kids = children(mlflow_uri)
    assert kids[0].info.status == "FINISHED"
    assert kids[0].data.tags["measure_skipped.needs_binary"] == "only for binary tasks"


def test_a_no_op_rerun_logs_no_parent_and_closes_dead_parents(mlflow_uri):
    import subprocess
    import sys

    from collect import claims

    runs = runs_of()[:1]
    first = run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    client, exp, _ = children(mlflow_uri)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = client.create_run(exp.experiment_id, tags={tracking.TAG_KIND: "sweep", **claims.owner_tags(),
                                                      claims.TAG_OWNER: f"{os.uname().nodename}:{gone.pid}"}).info.run_id
    live = tracking.start_parent(client, exp.experiment_id, "tiny", {})  # this process: a live concurrent invocation
    again = run_sweep(runs, sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert again.parent_run_id is None and again.skipped == 1 and again.outcomes == ()
    parents = client.search_runs([exp.experiment_id], f"tags.`{tracking.TAG_KIND}` = 'sweep'")
    assert {p.info.run_id for p in parents} == {first.parent_run_id, dead, live}  # no new, empty parent run
    assert client.get_run(dead).info.status == "FAILED"
    assert client.get_run(dead).data.tags["failure_reason"].startswith("driver stopped")
    assert client.get_run(live).info.status == "RUNNING"


def test_artifacts_of_a_sqlite_store_live_beside_its_database(mlflow_uri):
    from pathlib import Path

    run_sweep(runs_of()[:1], sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    _, exp, kids = children(mlflow_uri)
    db = Path(mlflow_uri.removeprefix("sqlite:///"))
    assert exp.artifact_location == (db.parent / "mlflow_artifacts" / "tiny").resolve().as_uri()
    assert (db.parent / "mlflow_artifacts" / "tiny" / kids[0].info.run_id / "artifacts" / "config.json").is_file()
