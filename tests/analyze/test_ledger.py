"""The ledger loader: MLflow runs and CSV/Parquet files become the same frame; bad input gets a clear error."""

from __future__ import annotations

import polars as pl
import pytest

from mlflow import MlflowClient
from mlflow.entities import Metric

from analyze.ledger import LedgerError, curves, finished, load_ledger, metric_column, parse_param, status_counts
from collect import tracking
from collect.measures.registry import registry
from collect.runner import run_sweep
from collect.sweep import expand, parse_spec

SPEC = {
    "name": "ledger-test",
    "measures": ["margins"],
    "base": {
        "data": {"dataset": "digits", "n_train": 60, "n_test": 40},
        "model": {"arch": "fcn", "width": 8, "depth": 1},
        "optim": {"lr": 0.1, "batch_size": 20},
        "stop": {"max_epochs": 1},
    },
    "zip": [{"optim.lr": [0.1, 0.05, 1e12], "optim.batch_size": [20, 60, 20]}],
}


@pytest.fixture
def logged(mlflow_uri):
    run_sweep(expand(parse_spec(SPEC, "t.toml")), sweep="ledger-test", tracking_uri=mlflow_uri, device="cpu", progress=False)
    return mlflow_uri


def test_mlflow_runs_become_ledger_rows(logged):
    ledger = load_ledger(tracking_uri=logged)  # most recent experiment by default
    assert len(ledger) == 3 and set(ledger["experiment"]) == {"ledger-test"}
    assert status_counts(ledger) == {"FINISHED": 2, "FAILED": 1}
    assert {"run_id", "seed", "status", "hp.lr", "hp.batch_size", "hp.optimizer", "gen.test_acc", "measure.margin_mean", "time.margins", "tag.intervention"} <= set(ledger.columns)
    assert ledger.schema["hp.lr"] == pl.Float64 and ledger.schema["hp.batch_size"] == pl.Int64
    assert ledger.schema["hp.standardize"] == pl.Boolean
    done = finished(ledger)
    assert len(done) == 2 and done["measure.margin_mean"].null_count() == 0
    failed = ledger.filter(pl.col("status") == "FAILED")
    assert failed["tag.failure_reason"][0].startswith("diverged")
    # In MLflow the names are grouped with '/'; the ledger keeps its dotted columns.
    stored = MlflowClient(tracking_uri=logged).get_run(done["run_id"][0]).data.metrics
    assert {"measure/margin_mean", "gen/test_acc", "time/margins", "train/steps", "curve/train_loss"} <= set(stored)
    assert not any("/" in c for c in ledger.columns)
    # The spec's zip is one intervention, on every child run (failed too) and on the parent.
    assert set(ledger["tag.interventions"]) == {'[["hp.lr", "hp.batch_size"]]'}
    client = MlflowClient(tracking_uri=logged)
    parent = client.get_run(client.get_run(done["run_id"][0]).data.tags["mlflow.parentRunId"])
    assert parent.data.tags["interventions"] == '[["hp.lr", "hp.batch_size"]]'
    assert curves(done["run_id"].to_list(), tracking_uri=logged, keys=["train_loss"])["metric"].unique().to_list() == ["train_loss"]


def test_metric_column_maps_groups_and_old_diagnostic_names():
    assert metric_column("measure/margin_mean") == "measure.margin_mean"
    assert metric_column("diag/hessian_trace_se") == "diag.hessian_trace_se"
    assert metric_column("gen/gap_acc") == "gen.gap_acc" and metric_column("train/steps") == "train.steps"
    assert metric_column("measure.log_volume_ep_converged") == "diag.log_volume_ep_converged"  # an old store's name
    assert metric_column("measure/log_volume_ep_converged") == "diag.log_volume_ep_converged"
    assert metric_column("measure.margin_mean") == "measure.margin_mean" and metric_column("gen.test_acc") == "gen.test_acc"
    assert metric_column("val/loss") == "val.loss" and metric_column("acc") == "acc"


def test_store_written_before_diagnostics_and_groups_still_loads(mlflow_uri):
    """A run logged with the old names (every metric dotted, diagnostics as measure.<key>, curves as curve.<key>)
    loads into the same columns as a run logged now: each registry diagnostic lands in diag.<key>."""
    diagnostics = sorted({k for m in registry().values() for k in m.diagnostics})
    assert diagnostics  # the registry declares some (log_volume's here; curvature's too once declared)
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("old-store")
    run_id = tracking.start_child(client, exp, None, {"optim": {"lr": 0.1}, "seed": 0}, {"sweep": "old-store"}, "old run")
    old = {"measure.margin_mean": 0.5, "gen.test_acc": 0.9, "gen.gap_acc": 0.05, "time.margins": 0.01, "train.steps": 7.0}
    old |= {f"measure.{k}": float(i) for i, k in enumerate(diagnostics)}
    client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in old.items()] + [Metric("curve.train_loss", 1.0 / s, 0, s) for s in (1, 2, 3)])
    client.set_terminated(run_id, "FINISHED")
    new_id = tracking.start_child(client, exp, None, {"optim": {"lr": 0.2}, "seed": 0}, {"sweep": "old-store"}, "new run")
    tracking.log_metrics(client, new_id, {"measure.margin_mean": 0.7, "gen.test_acc": 0.8, "gen.gap_acc": 0.1} | {f"diag.{k}": -1.0 for k in diagnostics})
    client.set_terminated(new_id, "FINISHED")

    ledger = load_ledger(tracking_uri=mlflow_uri, experiment="old-store").sort("hp.lr")
    assert ledger["run_id"].to_list() == [run_id, new_id]
    for i, key in enumerate(diagnostics):
        assert ledger[f"diag.{key}"].to_list() == [float(i), -1.0], key
        assert f"measure.{key}" not in ledger.columns
    assert ledger["measure.margin_mean"].to_list() == [0.5, 0.7] and ledger["train.steps"][0] == 7.0
    old_curve = curves([run_id], tracking_uri=mlflow_uri).sort("step")
    assert old_curve["metric"].to_list() == ["train_loss"] * 3 and old_curve["step"].to_list() == [1, 2, 3]


def test_ledger_file_round_trip(logged, tmp_path):
    ledger = load_ledger(tracking_uri=logged, experiment="ledger-test")
    for suffix in (".parquet", ".csv"):
        path = tmp_path / f"ledger{suffix}"
        ledger.write_parquet(path) if suffix == ".parquet" else ledger.write_csv(path)
        again = load_ledger(ledger_path=path)
        assert again.shape == ledger.shape
        assert again["measure.margin_mean"].to_list() == pytest.approx(ledger["measure.margin_mean"].to_list(), nan_ok=True)


def test_external_csv_without_ids_gets_them(tmp_path):
    path = tmp_path / "other_study.csv"
    pl.DataFrame({"hp.lr": [0.1, 0.2], "measure.sharpness": [1.0, 2.0], "gen.gap_acc": [0.1, 0.2]}).write_csv(path)
    ledger = load_ledger(ledger_path=path)
    assert set(ledger["status"]) == {"FINISHED"} and ledger["run_id"].to_list() == ["0", "1"]
    assert ledger["experiment"][0] == "other_study"


@pytest.mark.parametrize(
    "frame, message",
    [
        (pl.DataFrame({"hp.lr": [0.1], "gen.gap_acc": [0.1]}), "measure"),
        (pl.DataFrame({"hp.lr": [0.1], "measure.x": [0.1]}), "gen"),
    ],
)
def test_missing_columns_are_named(tmp_path, frame, message):
    path = tmp_path / "bad.csv"
    frame.write_csv(path)
    with pytest.raises(LedgerError, match=f"'{message}\\."):
        load_ledger(ledger_path=path)


def test_missing_store_and_unknown_experiment(tmp_path, logged):
    with pytest.raises(LedgerError, match="python -m collect"):
        load_ledger(tracking_uri=f"sqlite:///{tmp_path}/nothing/here.db")
    with pytest.raises(LedgerError, match="ledger-test"):
        load_ledger(tracking_uri=logged, experiment="nope")
    with pytest.raises(LedgerError, match="does not exist"):
        load_ledger(ledger_path=tmp_path / "missing.csv")


def test_parse_param():
    assert [parse_param(v) for v in ("True", "None", "3", "0.5", "sgd", "[1, 3]")] == [True, None, 3, 0.5, "sgd", "[1, 3]"]


def test_sqlite_reader_gives_the_frame_mlflowclient_gives(logged, monkeypatch):
    """The direct SQLite reader (``read_sqlite_store``, the fast path) and ``MlflowClient.search_runs``
    produce the same ledger, row order, dtypes, NaN metrics and failed runs included."""
    from analyze import ledger as ledger_module

    client = MlflowClient(tracking_uri=logged)
    run_id = load_ledger(tracking_uri=logged)["run_id"][0]
    client.log_metric(run_id, "measure/nan_measure", float("nan"))  # stored as 0 with is_nan: must read back as NaN
    client.log_metric(run_id, "measure/margin_mean", 123.0, step=5)  # a later step: the latest value wins
    db = tracking.sqlite_path(logged)
    assert ledger_module.read_sqlite_store(db, None) is not None  # the fast path is the one taken
    fast = load_ledger(tracking_uri=logged)
    monkeypatch.setattr(ledger_module, "read_sqlite_store", lambda db, experiment: None)
    slow = load_ledger(tracking_uri=logged)
    assert fast.columns == slow.columns and fast.schema == slow.schema
    assert fast.equals(slow, null_equal=True)
    row = fast.filter(pl.col("run_id") == run_id)
    assert row["measure.margin_mean"][0] == 123.0 and row["measure.nan_measure"].is_nan()[0]
    assert ledger_module.read_sqlite_store(db, "no-such-experiment") is None  # the client path names the known ones


def test_per_sample_artifacts_read_in_place_equal_the_downloaded_ones(logged, monkeypatch):
    """A SQLite store's local artifacts are read where they lie; the frames equal MlflowClient's downloads,
    and runs without the artifact (the FAILED one) are left out either way."""
    from analyze import ledger as ledger_module

    ledger = load_ledger(tracking_uri=logged)
    fast = ledger_module.load_per_sample(ledger, "margins", tracking_uri=logged)
    assert len(ledger_module.local_artifact_dirs(tracking.sqlite_path(logged), ledger["run_id"].to_list())) == 3
    monkeypatch.setattr(ledger_module, "local_artifact_dirs", lambda db, run_ids: {})
    slow = ledger_module.load_per_sample(ledger, "margins", tracking_uri=logged)
    assert set(fast) == set(slow) == set(finished(ledger)["run_id"])
    for run_id, frame in fast.items():
        assert frame.equals(slow[run_id])


def test_curves_read_from_sqlite_equal_the_metric_histories(logged, monkeypatch):
    """``curves`` on a SQLite store reads the metrics table in one query; same rows as
    ``MlflowClient.get_metric_history`` per run and metric, with a key filter too."""
    from analyze import ledger as ledger_module

    ids = finished(load_ledger(tracking_uri=logged))["run_id"].to_list()
    fast_all = curves(ids, tracking_uri=logged)
    fast_one = curves(ids, tracking_uri=logged, keys=["train_loss"])
    monkeypatch.setattr(ledger_module, "read_curves", lambda db, run_ids, keys: None)
    slow_all = curves(ids, tracking_uri=logged)
    slow_one = curves(ids, tracking_uri=logged, keys=["train_loss"])
    assert len(fast_all) > len(fast_one) > 0
    key = ["run_id", "metric", "step", "value"]
    assert fast_all.sort(key).equals(slow_all.sort(key)) and fast_one.sort(key).equals(slow_one.sort(key))


def test_prepare_warns_when_only_some_runs_reached_their_target():
    from analyze.ledger import prepare

    base = {"run_id": [f"r{i}" for i in range(6)], "status": ["FINISHED"] * 5 + ["FAILED"],
            "measure.m": [1.0, 2.0, 3.0, 4.0, 5.0, None], "gen.gap_acc": [0.1, 0.2, 0.3, 0.4, 0.5, None]}
    mixed = prepare(pl.DataFrame({**base, "train.converged": [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]}), target="gen.gap_acc")
    assert len(mixed.warnings) == 1 and mixed.warnings[0].startswith("3 of 5 finished runs stopped before")
    assert "only the runs at the target" in mixed.warnings[0] and "--all-runs pools them" in mixed.warnings[0]
    assert "--where train.converged=1" not in mixed.warnings[0]  # that selection is the default, not advice
    for values in ([1.0] * 6, [0.0] * 6):  # all reached it, or no target to reach: nothing to say
        assert prepare(pl.DataFrame({**base, "train.converged": values}), target="gen.gap_acc").warnings == ()


def test_parse_param_keeps_digit_labels_as_text():
    from analyze.ledger import parse_param

    table = "0" * 127 + "1"
    assert parse_param(table) == table and parse_param("1" + "0" * 127) == "1" + "0" * 127
    assert parse_param("007") == "007"
    assert parse_param("3") == 3 and parse_param("-2") == -2 and parse_param("1e-3") == 1e-3 and parse_param("0.1") == 0.1
    assert parse_param("True") is True and parse_param("None") is None and parse_param("sgd") == "sgd"
