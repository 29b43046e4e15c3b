"""Analysis at the comparison point: the runs at the sweep's target by default, ``--all-runs`` pooled with the
confound warning, runs that did not learn never, per-level counts and "not testable" levels, ledgers without the
columns unchanged; every subcommand and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analyze.cli import main
from analyze.comparison import MIN_AT_TARGET, select_comparison_point
from analyze.stats import StatsError

N_AT, N_MISSED, N_DEAD = 40, 36, 4


def opposite_ledger(seed: int = 0) -> pl.DataFrame:
    """Runs at the target: gap falls with the margin (τ < 0). Runs that missed it (undertrained: small margins, small
    gaps): gap rises with the margin, and pooled with the others the relation turns positive. Runs that did not learn
    carry garbage that would show if they entered. dropout = 0.5 keeps only 2 runs at the target (not testable)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(N_AT):
        m = rng.uniform(0.5, 1.5)
        rows.append({"converged": 1.0, "learned": 1.0, "margin": m, "gap": 0.6 - 0.3 * m + rng.normal(0, 0.02),
                     "dropout": 0.5 if i < 2 else 0.0, "lr": [0.01, 0.1][i % 2]})
    for i in range(N_MISSED):
        m = rng.uniform(0.0, 0.4)
        rows.append({"converged": 0.0, "learned": 1.0, "margin": m, "gap": 0.02 + 0.2 * m + rng.normal(0, 0.005),
                     "dropout": 0.5 if i < 14 else 0.0, "lr": [0.01, 0.1][i % 2]})
    for i in range(N_DEAD):
        rows.append({"converged": 0.0, "learned": 0.0, "margin": 1e6, "gap": -1e6, "dropout": 0.5, "lr": 0.1})
    n = len(rows)
    return pl.DataFrame({
        "run_id": [f"r{i:03d}" for i in range(n)], "status": ["FINISHED"] * n,
        "hp.dropout": [r["dropout"] for r in rows], "hp.lr": [r["lr"] for r in rows],
        "hp.train_loss": [0.01] * n, "tag.comparison_point": ["train cross-entropy <= 0.01"] * n,
        "measure.margin": [r["margin"] for r in rows], "gen.gap_acc": [r["gap"] for r in rows],
        "gen.test_acc": [0.9 - r["gap"] if r["learned"] else 0.1 for r in rows], "hp.n_test": [1000] * n,
        "train.converged": [r["converged"] for r in rows], "train.learned": [r["learned"] for r in rows],
    })


@pytest.fixture(scope="module")
def ledger_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("comparison") / "opposite.csv"
    opposite_ledger().write_csv(path)
    return path


def _doc(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[dict, str]:
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_rank_at_the_target_by_default_and_pooled_with_all_runs(ledger_csv: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["rank", "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0"]
    frame = opposite_ledger()
    at = frame.filter(pl.col("train.converged") == 1)
    learned = frame.filter(pl.col("train.learned") == 1)
    tau_at = stats.kendalltau(at["measure.margin"], at["gen.gap_acc"]).statistic
    tau_pooled = stats.kendalltau(learned["measure.margin"], learned["gen.gap_acc"]).statistic
    assert tau_at < -0.5 and tau_pooled > 0.3  # the ledger is what the test claims: opposite relations

    doc, err = _doc(capsys, base)
    (row,) = doc["rows"]
    assert row["n"] == N_AT and row["kendall_tau"] == pytest.approx(tau_at, abs=1e-12)
    comp = doc["meta"]["comparison"]
    assert comp["mode"] == "target" and comp["label"] == "train cross-entropy <= 0.01"
    assert comp["runs"] == {"finished": N_AT + N_MISSED + N_DEAD, "kept": N_AT, "missed_target": N_MISSED, "not_learned": N_DEAD}
    assert not any("stopped before their stopping target" in w for w in doc["meta"]["warnings"])
    assert f"{N_AT} of {N_AT + N_MISSED + N_DEAD} finished runs reached it" in err

    doc, err = _doc(capsys, base + ["--all-runs"])
    (row,) = doc["rows"]
    assert row["n"] == N_AT + N_MISSED and row["kendall_tau"] == pytest.approx(tau_pooled, abs=1e-12)
    assert doc["meta"]["comparison"]["mode"] == "all_runs"
    assert any("stopped before their stopping target" in w for w in doc["meta"]["warnings"])  # the confound warning
    assert "warning:" in err and "--all-runs" in err


def test_levels_counted_and_untestable_level_named(ledger_csv: Path, capsys: pytest.CaptureFixture) -> None:
    doc, err = _doc(capsys, ["rank", "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0"])
    levels = {(r["intervention"], r["level"]): r for r in doc["meta"]["comparison"]["levels"]}
    frame = opposite_ledger()
    for (iv, level), r in levels.items():
        col = pl.col(f"hp.{iv}").cast(pl.Utf8).str.replace(r"\.0$", "") == level
        mine = frame.filter(col)
        assert r["n_runs"] == mine.height
        assert r["n_kept"] == mine.filter((pl.col("train.converged") == 1)).height
        assert r["n_not_learned"] == mine.filter(pl.col("train.learned") == 0).height
        assert r["n_missed"] == mine.height - r["n_kept"] - r["n_not_learned"]
        assert r["testable"] == (r["n_kept"] >= MIN_AT_TARGET)
    bad = levels[("dropout", "0.5")]
    assert (bad["n_runs"], bad["n_kept"], bad["testable"]) == (2 + 14 + N_DEAD, 2, False)
    assert "dropout = 0.5: not testable (2 of 20 runs reached the target; 14 missed it, 4 did not learn)" in err
    assert any("not testable" in w for w in doc["meta"]["warnings"])
    assert doc["meta"]["comparison"]["not_testable"] == [bad["sentence"]]


@pytest.mark.parametrize("argv", [["granulated"], ["sign-error"], ["cmi"], ["flags", "--min-group", "4"],
                                  ["partial", "--covariates", "hp.lr"], ["power"]])
def test_every_subcommand_sees_the_runs_at_the_target(ledger_csv: Path, capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    doc, _ = _doc(capsys, [*argv, "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0"])
    assert doc["meta"]["comparison"]["runs"]["kept"] == N_AT
    assert doc["meta"]["runs"]["finished"] == N_AT


def test_runs_that_did_not_learn_never_enter(capsys: pytest.CaptureFixture) -> None:
    frame = opposite_ledger()
    for all_runs in (False, True):
        kept, sel = select_comparison_point(frame, all_runs=all_runs)
        assert kept.filter(pl.col("train.learned") == 0).height == 0 and sel.n_not_learned == N_DEAD
    budget = frame.drop("train.converged", "hp.train_loss")  # a budget sweep: train.learned only
    kept, sel = select_comparison_point(budget)
    assert sel.mode == "budget" and kept.height == N_AT + N_MISSED
    assert "did not learn" in sel.messages()[0]


def test_ledgers_without_the_columns_or_targets_pass_through() -> None:
    frame = opposite_ledger().drop("train.converged", "train.learned")
    kept, sel = select_comparison_point(frame)
    assert sel.mode == "none" and kept.equals(frame) and sel.messages() == [] and sel.warnings() == []
    # an older collect logged train.converged = 0 in budget sweeps: without a declared target it is not a selection
    old = opposite_ledger().drop("hp.train_loss", "train.learned").with_columns(pl.lit(0.0).alias("train.converged"))
    kept, sel = select_comparison_point(old)
    assert sel.mode == "budget" and kept.equals(old)
    # a target sweep in which no run reached the target is an error that names the fixes
    with pytest.raises(StatsError, match="--all-runs"):
        select_comparison_point(old.with_columns(pl.lit(0.01).alias("hp.train_loss")))


def test_unfinished_runs_are_kept_for_the_counts() -> None:
    frame = opposite_ledger().with_columns(
        pl.when(pl.col("run_id") == "r000").then(pl.lit("FAILED")).otherwise(pl.col("status")).alias("status"))
    kept, sel = select_comparison_point(frame)
    assert sel.n_finished == frame.height - 1 and kept.filter(pl.col("status") == "FAILED")["run_id"].to_list() == ["r000"]
    assert kept.filter(pl.col("status") == "FINISHED").height == N_AT - 1


def test_min_at_target_option(ledger_csv: Path, capsys: pytest.CaptureFixture) -> None:
    doc, err = _doc(capsys, ["rank", "--ledger", str(ledger_csv), "--format", "json", "--resamples", "0",
                             "--min-at-target", "2"])
    assert doc["meta"]["comparison"]["not_testable"] == [] and "not testable" not in err
    assert main(["rank", "--ledger", str(ledger_csv), "--min-at-target", "0"]) == 2
    assert "--min-at-target 0" in capsys.readouterr().err


def test_report_names_the_comparison_point_and_untestable_levels(ledger_csv: Path, capsys: pytest.CaptureFixture,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--ledger", str(ledger_csv), "--resamples", "0", "--sections", "verdict,comparison",
                 "--out", str(out)]) == 0
    html = out.read_text()
    assert "Comparison point" in html and "train cross-entropy &lt;= 0.01" in html
    assert "dropout = 0.5: not testable (2 of 20 runs reached the target" in html
    assert f"{N_AT} of {N_AT + N_MISSED + N_DEAD} finished runs reached it" in html
    assert "Smallest difference in gen.gap_acc this design could detect" in html
