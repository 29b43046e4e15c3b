"""``python -m analyze`` JSON (schema ``flatlas.analyze/3``): measures only, and flags that say what they tested."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analyze.cli import main
from tests.analyze.synthetic import synthetic_ledger


def _json(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_rank_json_lists_no_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyze.stats import _data

    frame = synthetic_ledger(seed=0, n_noise=1).with_columns(
        pl.Series("diag.hessian_trace_se", np.linspace(0, 1, 120)),
        pl.Series("measure.old_trace_se", np.linspace(0, 1, 120)),  # a diagnostic logged as measure.* by an old store
    )
    path = tmp_path / "ledger.csv"
    frame.write_csv(path)
    real = _data._output_kind
    monkeypatch.setattr(_data, "_output_kind", lambda key: "diagnostic" if key == "old_trace_se" else real(key))
    doc = _json(capsys, ["rank", "--ledger", str(path), "--format", "json", "--resamples", "0"])
    assert doc["schema"] == "flatlas.analyze/3"
    assert sorted(r["measure"] for r in doc["rows"]) == ["measure.noise_0", "measure.planted"]
    assert main(["rank", "--ledger", str(path), "--measures", "diag.hessian_trace_se"]) == 2
    assert "diagnostic" in capsys.readouterr().err


def test_flags_json_counts_tested_and_untestable_relationships(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "ledger.csv"
    synthetic_ledger(seed=0, n_seeds=1, break_group=None, n_noise=0).write_csv(path)  # 8 runs per lr level
    doc = _json(capsys, ["flags", "--ledger", str(path), "--format", "json", "--min-group", "10"])
    rel = doc["meta"]["relationships"]
    assert (rel["tested"], rel["untestable"]) == (3, 1)
    assert {r["axis"]: r["n_untestable"] for r in rel["by_axis"]}["hp.lr"] == 1
    assert main(["flags", "--ledger", str(path), "--min-group", "10"]) == 0
    assert "relationships tested: 3, untestable: 1" in capsys.readouterr().out


def test_granulated_min_configs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "ledger.csv"
    synthetic_ledger(seed=0, n_seeds=2).write_csv(path)
    rows = {r["axis"]: r for r in _json(capsys, ["granulated", "--ledger", str(path), "--format", "json"])["rows"]
            if r["measure"] == "measure.planted"}
    # a two-level axis: 12 cells of 2 configurations, ψ is the mean of their ±1 signs (Jiang et al. 2020)
    assert rows["hp.dropout"]["psi"] is not None and rows["hp.dropout"]["n_cells"] == 12
    assert rows["hp.lr"]["psi"] is not None  # 3 levels per cell
    three = {r["axis"]: r for r in _json(capsys, ["granulated", "--ledger", str(path), "--format", "json",
                                                  "--min-configs", "3"])["rows"] if r["measure"] == "measure.planted"}
    assert three["hp.dropout"]["psi"] is None and "not enough runs" in three["hp.dropout"]["note"]
