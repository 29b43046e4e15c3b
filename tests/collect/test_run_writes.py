"""What a run writes to the store and what a sweep reports: one batched write of a run's results, a run taken over
by another invocation reported as such (not failed), a parent run's status final once written."""

from __future__ import annotations

import collections

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from collect import claims, tracking
from collect.runner import SweepTarget, run_one, run_sweep, sequential_executor
from tests.collect.test_runner import TINY, children, runs_of


def test_batches_respect_mlflows_limits_and_lose_nothing():
    metrics = [Metric(f"m{i}", float(i), 0, 0) for i in range(2500)]
    params = [Param(f"p{i}", "v") for i in range(130)]
    tags = [RunTag(f"t{i}", "v") for i in range(40)]
    calls = tracking.batches(metrics, params, tags)
    for m, p, g in calls:
        assert len(m) <= 1000 and len(p) <= 100 and len(g) <= 100 and len(m) + len(p) + len(g) <= 1000
    assert [x for m, _, _ in calls for x in m] == metrics
    assert [x for _, p, _ in calls for x in p] == params and [x for _, _, g in calls for x in g] == tags
    assert len(calls) == 3  # 2670 entities: the fewest calls of at most 1000
    assert len(tracking.batches(metrics[:800], params[:50], tags)) == 1  # a run's usual size: one call


def test_each_run_writes_its_results_in_one_log_batch_and_logs_what_it_always_logged(mlflow_uri, monkeypatch):
    """Per child run: one ``log_batch`` with its params when it is created (a failed or killed run keeps its config),
    one with every metric, curve point and tag at the end, one ``log_inputs`` for both datasets, one artifact
    upload. The layout itself is the one ``test_runner.test_sweep_logs_parent_children_params_metrics_curves_artifacts``
    checks."""
    calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for method in ("log_batch", "log_inputs", "log_artifacts", "log_metric", "log_param", "set_tag"):
        original = getattr(MlflowClient, method)

        def counted(self, run_id, *args, _original=original, _method=method, **kwargs):
            calls[run_id][_method] += 1
            return _original(self, run_id, *args, **kwargs)

        monkeypatch.setattr(MlflowClient, method, counted)
    summary = run_sweep(runs_of()[:2], sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False)
    assert summary.finished == 2
    client, _, kids = children(mlflow_uri)
    for kid in kids:
        made = calls[kid.info.run_id]
        assert made["log_batch"] == 2 and made["log_inputs"] == 1 and made["log_artifacts"] == 1, made
        assert made["log_metric"] == 0 and made["log_param"] == 0, made
        run = client.get_run(kid.info.run_id)
        assert "measure/margin_mean" in run.data.metrics and "train/steps" in run.data.metrics
        assert run.data.tags["stop_reason"] and run.data.params["optim.lr"] == "0.1"
        assert len(client.get_metric_history(kid.info.run_id, "curve/train_loss")) >= 2
        assert len(run.inputs.dataset_inputs) == 2


def test_a_run_taken_over_while_it_trained_is_reported_as_taken_not_failed(mlflow_uri):
    """Another invocation closes the run while it trains (as ``claims.take_over_dead`` does when no heartbeat reached
    the store): the outcome is SKIPPED (counted as taken by another invocation), the run keeps the FAILED status."""
    from collect.train import train

    planned = runs_of()[0]
    client = tracking.ensure_store(mlflow_uri)
    exp = tracking.get_or_create_experiment(client, "tiny", mlflow_uri)
    target = SweepTarget(mlflow_uri, exp, None, "tiny", "cpu", False)

    def train_then_found_taken(*args, **kwargs):
        (mine,) = [r for r in claims.runs_of_hash(client, exp, planned.config_hash) if r.info.status == "RUNNING"]
        client.set_tag(mine.info.run_id, "failure_reason", "owner gone: taken over by another run")
        client.set_terminated(mine.info.run_id, "FAILED")
        return train(*args, **kwargs)

    outcome = run_one(planned, target, train_fn=train_then_found_taken)
    assert outcome.status == "SKIPPED" and outcome.reason.startswith("taken over by another invocation")
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FAILED" and run.data.tags["claim.taken_over"] == "True"
    assert "measure/margin_mean" in run.data.metrics  # its results are logged all the same


def test_a_parent_closed_by_another_invocation_keeps_its_status(mlflow_uri, capsys):
    """While this invocation was stopped another one marked its parent FAILED (``close_stale_parents``); finishing
    later does not flip it to FINISHED, and the summary says so."""

    def executor_stopped_midway(runs, target):
        client = MlflowClient(tracking_uri=target.tracking_uri)
        client.set_tag(target.parent_run_id, "failure_reason", "driver stopped: closed by another invocation")
        client.set_terminated(target.parent_run_id, "FAILED")
        yield from sequential_executor(runs, target)

    summary = run_sweep(runs_of()[:1], sweep="tiny", tracking_uri=mlflow_uri, device="cpu", progress=False,
                        executor=executor_stopped_midway)
    assert summary.finished == 1 and summary.parent_status == "FAILED"
    parent = MlflowClient(tracking_uri=mlflow_uri).get_run(summary.parent_run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["status.kept"].startswith("FAILED: closed by another invocation")
    assert parent.data.metrics["runs/finished"] == 1


@pytest.mark.parametrize("status", ["FINISHED", "KILLED"])
def test_terminate_if_running_writes_a_status_once(mlflow_uri, status):
    client = tracking.ensure_store(mlflow_uri)
    exp = tracking.get_or_create_experiment(client, TINY["name"], mlflow_uri)
    run_id = client.create_run(exp).info.run_id
    assert tracking.terminate_if_running(client, run_id, status) is None
    assert tracking.terminate_if_running(client, run_id, "FAILED", "late") == status
    assert client.get_run(run_id).info.status == status
