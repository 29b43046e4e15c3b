"""The ledger loader: MLflow runs and CSV/Parquet files become the same frame; bad input gets a clear error."""

from __future__ import annotations

import polars as pl
import pytest

from analyze.ledger import LedgerError, finished, load_ledger, parse_param, status_counts
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
