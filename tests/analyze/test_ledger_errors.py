"""Bad ledgers get a clear one-line error (exit code 2) or a visible skip/warning, never a traceback and never a
silent drop. Each case is a small CSV written here and run through ``python -m analyze rank``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analyze.cli import main
from analyze.ledger import LedgerError, load_ledger, prepare

N = 12


def _base(n: int = N) -> dict[str, list]:
    rng = np.random.default_rng(0)
    gap = rng.normal(size=n)
    return {
        "run_id": [f"r{i}" for i in range(n)],
        "status": ["FINISHED"] * n,
        "hp.lr": [0.1, 0.01, 0.001] * (n // 3),
        "hp.optimizer": ["sgd", "adam"] * (n // 2),
        "measure.sharpness": list(gap + rng.normal(scale=0.5, size=n)),
        "measure.l2_norm": list(rng.normal(size=n)),
        "gen.gap_acc": list(gap),
    }


def _csv(tmp_path: Path, columns: dict[str, list], name: str = "ledger.csv") -> Path:
    path = tmp_path / name
    header = list(columns)
    lines = [",".join(header)]
    for i in range(len(next(iter(columns.values())))):
        lines.append(",".join("" if columns[c][i] is None else str(columns[c][i]) for c in header))
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture, path: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["rank", "--ledger", str(path), "--resamples", "0", *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_empty_csv(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("")
    code, _, err = _run(capsys, path)
    assert code == 2 and "the ledger has no rows" in err and str(path) in err


def test_header_only_csv(tmp_path, capsys):
    path = tmp_path / "header.csv"
    path.write_text("run_id,status,hp.lr,measure.sharpness,gen.gap_acc\n")
    code, _, err = _run(capsys, path)
    assert code == 2 and "the ledger has no rows" in err


def test_non_numeric_measure_is_skipped_and_listed_unless_named(tmp_path, capsys):
    cols = _base()
    cols["measure.l2_norm"][3] = "n/a"  # one text cell makes the whole column text
    path = _csv(tmp_path, cols)
    code, out, err = _run(capsys, path, "--format", "json")
    assert code == 0
    assert "skipped columns" in err and "measure.l2_norm" in err and "not numeric" in err and "'n/a'" in err
    doc = json.loads(out)
    assert doc["meta"]["skipped_columns"] == [
        {"column": "measure.l2_norm", "reason": "not numeric: 1 of 12 finished runs have text (e.g. 'n/a')"}]
    assert [r["measure"] for r in doc["rows"]] == ["measure.sharpness"]  # analysed: the numeric measure only
    code, _, err = _run(capsys, path, "--measures", "l2_norm,sharpness")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "skipped columns" not in err  # an error, not a skip
    assert "measure.l2_norm" in errors[0] and "not numeric" in errors[0] and "--measures" in errors[0]


def test_all_nan_measure_is_skipped_and_listed(tmp_path, capsys):
    cols = _base()
    cols["measure.l2_norm"] = ["nan"] * 6 + [None] * 6  # NaN or blank in every row
    code, out, err = _run(capsys, _csv(tmp_path, cols), "--format", "json")
    assert code == 0 and "measure.l2_norm" in err and "no finished run has a value" in err
    skipped = json.loads(out)["meta"]["skipped_columns"]
    assert [s["column"] for s in skipped] == ["measure.l2_norm"]


def test_measure_with_values_only_in_failed_runs_is_skipped(tmp_path, capsys):
    cols = _base()
    cols["status"] = ["FINISHED"] * 10 + ["FAILED"] * 2
    cols["measure.l2_norm"] = ["NaN"] * 10 + [1.0, 2.0]
    code, _, err = _run(capsys, _csv(tmp_path, cols))
    assert code == 0 and "measure.l2_norm: no finished run has a value" in err


def test_all_nan_target(tmp_path, capsys):
    cols = _base()
    cols["gen.gap_acc"] = ["NaN"] * N
    code, _, err = _run(capsys, _csv(tmp_path, cols))
    assert code == 2 and "no finished run has a value of gen.gap_acc" in err


def test_duplicate_run_ids(tmp_path, capsys):
    cols = _base()
    cols["run_id"][5] = "r2"
    cols["run_id"][7] = "r2"
    cols["run_id"][9] = "r4"
    code, _, err = _run(capsys, _csv(tmp_path, cols))
    assert code == 2 and "duplicate run_id" in err and "r2 (3 times)" in err and "r4 (2 times)" in err


def test_repeated_finished_runs_of_one_configuration_are_analysed_once(tmp_path, capsys):
    """Two configurations trained twice each (same tag.config_hash, e.g. a Dask worker cut off from its
    scheduler): 14 rows, 12 configurations; the statistics use 12 runs and the warning says 2 were dropped."""
    cols = _base()
    cols["tag.config_hash"] = [f"h{i}" for i in range(N)]
    for c in cols:
        cols[c] = cols[c] + [cols[c][0], cols[c][1]]
    cols["run_id"][-2:] = ["r0-again", "r1-again"]
    path = _csv(tmp_path, cols)
    code, out, err = _run(capsys, path, "--format", "json")
    assert code == 0
    assert "2 duplicate FINISHED run(s) of 2 configuration(s)" in err and "r0-again" in err and "r1-again" in err
    doc = json.loads(out)
    assert doc["meta"]["runs"]["total"] == 12 and doc["rows"][0]["n"] == 12
    assert any("2 duplicate" in w for w in doc["meta"]["warnings"])
    # A FAILED attempt of a configuration that also FINISHED is not a duplicate.
    cols["status"][-1] = "FAILED"
    code, _, err = _run(capsys, _csv(tmp_path, cols, "one-failed.csv"))
    assert code == 0 and "1 duplicate FINISHED run(s) of 1 configuration(s)" in err


def test_hp_column_mixing_numbers_and_text(tmp_path, capsys):
    cols = _base()
    cols["hp.lr"][4] = "fast"
    cols["hp.lr"][8] = "slow"
    code, _, err = _run(capsys, _csv(tmp_path, cols))
    assert code == 2 and "hp.lr mixes numbers and text" in err and "rows 5, 9 (run_id r4, r8)" in err


def test_hp_column_with_blank_cells(tmp_path, capsys):
    cols = _base()
    cols["hp.optimizer"][2] = None
    code, _, err = _run(capsys, _csv(tmp_path, cols))
    assert code == 2 and "hp.optimizer has blank cells" in err and "row 3 (run_id r2)" in err
    # A column blank in every row is a hyperparameter no run set (e.g. stop.max_steps = None): accepted.
    cols = _base()
    cols["hp.max_steps"] = [None] * N
    code, _, _ = _run(capsys, _csv(tmp_path, cols, "unset.csv"))
    assert code == 0


def test_clean_ledger_passes_unchanged(tmp_path):
    path = _csv(tmp_path, _base())
    ledger = load_ledger(ledger_path=path)
    prepared = prepare(ledger, target="gen.gap_acc")
    assert prepared.skipped == () and prepared.warnings == () and prepared.ledger.equals(ledger)
    assert prepared.skipped_frame().columns == ["column", "reason"] and prepared.skipped_frame().height == 0
    with pytest.raises(LedgerError, match="does not exist"):
        load_ledger(ledger_path=tmp_path / "nope.csv")
    pl.DataFrame(_base()).write_parquet(tmp_path / "ok.parquet")
    assert load_ledger(ledger_path=tmp_path / "ok.parquet").height == N


def test_duplicate_column_names_are_an_error_naming_the_column(tmp_path, capsys):
    cols = _base()
    path = _csv(tmp_path, cols)
    header, *rows = path.read_text().splitlines()
    # the second measure.sharpness is a copy of measure.l2_norm's cells under the same name
    path.write_text("\n".join([header.replace("measure.l2_norm", "measure.sharpness"), *rows]) + "\n")
    code, out, err = _run(capsys, path)
    assert code == 2 and out == ""
    assert "duplicate column name 'measure.sharpness' in columns 5, 6" in err and str(path) in err
    assert "_duplicated_" not in err
    path = tmp_path / "tabs.tsv"  # the same check on a TSV
    path.write_text("run_id\tmeasure.m\tmeasure.m\tgen.gap_acc\nr0\t1\t2\t3\nr1\t2\t3\t4\nr2\t3\t1\t2\n")
    code, _, err = _run(capsys, path)
    assert code == 2 and "duplicate column name 'measure.m' in columns 2, 3" in err
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"  # Parquet allows the same name twice; polars refuses to read it, naming it
    pq.write_table(pa.table([pa.array([1.0, 2.0, 3.0])] * 2 + [pa.array([0.1, 0.3, 0.2])],
                            names=["measure.m", "measure.m", "gen.gap_acc"]), path)
    code, _, err = _run(capsys, path)
    assert code == 2 and "'measure.m' has more than one occurrence" in err


def test_non_utf8_header_is_an_error_naming_the_column(tmp_path, capsys):
    path = _csv(tmp_path, _base())
    header, *rows = path.read_bytes().split(b"\n", 1)
    latin1 = header.replace(b"measure.l2_norm", "measure.l2_norm_é".encode("latin-1"))  # é as the single byte 0xe9
    path.write_bytes(latin1 + b"\n" + rows[0])
    code, out, err = _run(capsys, path)
    assert code == 2 and out == ""
    assert "column 6 of the header" in err and "measure.l2_norm_" in err and "is not UTF-8" in err and "0xe9" not in err
    assert "b'\\xe9'" in err
    # the same name written as UTF-8 is an ordinary measure
    path.write_bytes(header.replace(b"measure.l2_norm", "measure.l2_norm_é".encode()) + b"\n" + rows[0])
    code, out, _ = _run(capsys, path)
    assert code == 0 and "measure.l2_norm_é" in out


def test_infinite_cells_are_counted_on_stderr_and_in_meta(tmp_path, capsys):
    cols = _base()
    cols["measure.l2_norm"][1] = "inf"
    cols["measure.l2_norm"][4] = "-inf"
    cols["gen.gap_acc"][7] = "inf"
    code, out, err = _run(capsys, _csv(tmp_path, cols), "--format", "json", "--no-seed-means")
    assert code == 0
    doc = json.loads(out)
    expected = ["measure.l2_norm: 2 of 12 finished runs have ±inf (rows 2, 5 (run_id r1, r4))",
                "gen.gap_acc: 1 of 12 finished runs have ±inf (row 8 (run_id r7))"]
    for text in expected:
        assert sum(text in w for w in doc["meta"]["warnings"]) == 1
        assert f"warning: {text}" in err
    by_measure = {r["measure"]: r["n"] for r in doc["rows"]}
    assert by_measure == {"measure.l2_norm": 9, "measure.sharpness": 11}  # the ±inf cells are missing values
