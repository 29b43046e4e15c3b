"""``python -m analyze``: every subcommand end to end on a ledger file, the rank table against scipy, the JSON
layout, errors, and one run from an MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analyze.cli import SCHEMA_VERSION, main
from tests.analyze.synthetic import synthetic_ledger


@pytest.fixture(scope="module")
def ledger_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "syn.csv"
    synthetic_ledger(seed=0, n_failed=3).write_csv(path)
    return path


def _json(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _seed_means(done: pl.DataFrame, column: str) -> np.ndarray:
    """``column`` averaged over the seeds of each configuration (same hp.* values), by plain Python grouping."""
    keys = [c for c in done.columns if c.startswith("hp.")]
    groups: dict[tuple, list[float]] = {}
    for row in done.iter_rows(named=True):
        groups.setdefault(tuple(row[k] for k in keys), []).append(row[column])
    return np.array([float(np.mean(v)) for v in groups.values()])


def test_rank_json_equals_scipy_on_configuration_means(ledger_csv: Path, capsys: pytest.CaptureFixture) -> None:
    doc = _json(capsys, ["rank", "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0"])
    assert doc["schema"] == SCHEMA_VERSION and doc["meta"]["runs"] == {
        "total": 123, "finished": 120, "excluded": 3, "by_status": {"FAILED": 3, "FINISHED": 120}}
    assert doc["meta"]["target"] == "gen.gap_acc" and doc["columns"][:2] == ["rank", "measure"]
    assert doc["meta"]["configurations"]["configurations"] == 24 and doc["meta"]["configurations"]["seed_means"]
    done = pl.read_csv(ledger_csv).filter(pl.col("status") == "FINISHED")
    taus = [abs(r["kendall_tau"]) for r in doc["rows"]]
    assert taus == sorted(taus, reverse=True)
    for row in doc["rows"]:
        assert row["n"] == 24  # 24 configurations × 5 seeds: the seeds of a configuration are averaged first
        a, b = _seed_means(done, row["measure"]), _seed_means(done, "gen.gap_acc")
        for fn, col, p in ((stats.pearsonr, "pearson_r", "pearson_p"), (stats.spearmanr, "spearman_rho", "spearman_p"),
                           (stats.kendalltau, "kendall_tau", "kendall_p")):
            ref = fn(a, b)
            assert row[col] == pytest.approx(ref.statistic, abs=1e-12)  # JSON round trip keeps full precision
            assert row[p] == pytest.approx(ref.pvalue, rel=1e-9)
    per_run = _json(capsys, ["rank", "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0", "--no-seed-means"])
    assert {r["n"] for r in per_run["rows"]} == {120}


def test_rank_table_csv_and_out_file(ledger_csv: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["rank", "--ledger", str(ledger_csv), "--resamples", "50", "--target", "gen.test_acc"]) == 0
    text = capsys.readouterr().out
    assert "finished runs: 120 of 123" in text and "excluded: 3 FAILED" in text and "measure.planted" in text
    out = tmp_path / "rank.csv"
    assert main(["rank", "--ledger", str(ledger_csv), "--format", "csv", "--resamples", "0", "--out", str(out)]) == 0
    frame = pl.read_csv(out)
    assert frame.height == 3 and {"kendall_tau", "kendall_p_adj", "direction"} <= set(frame.columns)


@pytest.mark.parametrize(
    "argv, column",
    [
        (["partial", "--covariates", "measure.noise_0"], "covariates"),
        (["partial", "--matrix"], "control"),
        (["granulated"], "psi"),
        (["sign-error", "--min-ess", "1"], "p90"),
        (["cmi"], "cmi"),
        (["flags"], "sentence"),
    ],
)
def test_every_subcommand_emits_json(ledger_csv: Path, capsys: pytest.CaptureFixture, argv: list[str], column: str) -> None:
    doc = _json(capsys, [*argv, "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0"])
    assert column in doc["columns"] and doc["rows"] and doc["meta"]["subcommand"] == argv[0]


def test_errors_exit_2_with_a_message(ledger_csv: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["rank", "--ledger", str(ledger_csv), "--target", "gen.nope"]) == 2
    assert "gen.nope" in capsys.readouterr().err
    assert main(["rank", "--ledger", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["partial", "--ledger", str(ledger_csv)]) == 2
    assert "--covariates" in capsys.readouterr().err


def test_report_writes_html(ledger_csv: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--ledger", str(ledger_csv), "--resamples", "0", "--out", str(out)]) == 0
    html = out.read_text()
    assert "measure.planted" in html and "hp.optimizer" in html


def test_rank_from_mlflow_most_recent_experiment(mlflow_uri: str, capsys: pytest.CaptureFixture) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    rng = np.random.default_rng(0)
    for name in ("older", "newer"):
        exp = client.create_experiment(name)
        for i in range(8):
            run = client.create_run(exp)
            gap = float(rng.normal())
            client.log_param(run.info.run_id, "lr", 0.1 * (i % 2 + 1))
            client.log_metric(run.info.run_id, "gen.gap_acc", gap)
            client.log_metric(run.info.run_id, "measure.sharp", gap + float(rng.normal(0, 0.1)))
            client.set_terminated(run.info.run_id, "FINISHED" if i < 7 else "FAILED")
    doc = _json(capsys, ["rank", "--tracking-uri", mlflow_uri, "--format", "json", "--resamples", "0"])
    assert doc["meta"]["experiment"] == "newer" and doc["meta"]["runs"]["finished"] == 7
    assert doc["rows"][0]["measure"] == "measure.sharp" and doc["rows"][0]["n"] == 7


def test_flags_reference_override(ledger_csv: Path, capsys: pytest.CaptureFixture) -> None:
    doc = _json(capsys, ["flags", "--ledger", str(ledger_csv), "--format", "json", "--reference", "hp.optimizer=adam"])
    assert [(r["flag"], r["group"], r["reference"]) for r in doc["rows"]] == [("sign_reversal", "sgd", "adam")]
    assert main(["flags", "--ledger", str(ledger_csv), "--reference", "optimizer"]) == 2
    assert "AXIS=VALUE" in capsys.readouterr().err


def test_where_selects_runs_and_names_bad_columns(tmp_path, capsys):
    import json as _json

    import polars as pl

    from analyze.cli import main

    path = tmp_path / "ledger.csv"
    pl.DataFrame(
        {"hp.optimizer": ["sgd"] * 6 + ["adam"] * 6, "measure.m": list(range(12)), "gen.gap_acc": [float(i % 5) for i in range(12)],
         "train.converged": [1.0, 0.0] * 6}
    ).write_csv(path)
    out = tmp_path / "rank.json"
    assert main(["rank", "--ledger", str(path), "--where", "hp.optimizer=adam", "--all-runs", "--resamples", "0", "--format",
                 "json", "--out", str(out)]) == 0  # --all-runs: the runs that missed the target stay, pooled
    doc = _json.loads(out.read_text())
    assert doc["rows"][0]["n"] == 6
    # a float metric matches the number however it is written (train.converged is stored as 1.0)
    for value in ("1", "1.0"):
        assert main(["rank", "--ledger", str(path), "--where", f"train.converged={value}", "--resamples", "0", "--format",
                     "json", "--out", str(out)]) == 0
        assert _json.loads(out.read_text())["rows"][0]["n"] == 6
    assert main(["rank", "--ledger", str(path), "--where", "hp.nope=1"]) == 2
    assert "no column 'hp.nope'" in capsys.readouterr().err
