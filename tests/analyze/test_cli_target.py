"""Any target: every statistic of ``rank`` and ``report`` is computed for ``--target``; a target without a known
orientation gets one from ``--target-better``; a relation without an expected sign reads "direction unknown" with
its τ, never "no pooled relation"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from analyze.cli import main
from analyze.columns import orientation_by_name, target_badness
from analyze.report.verdict import matrix_rows
from analyze.stats import report_frames
from tests.analyze.synthetic import synthetic_ledger


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    """The planted measure named after a registered one (sharpness: larger goes with a larger gap), no break, and a
    test-error column (1 − test accuracy) that is not one of the four default targets."""
    frame = synthetic_ledger(seed=1, break_group=None).rename({"measure.planted": "measure.sharpness"})
    frame = frame.with_columns((1 - pl.col("gen.test_acc")).alias("gen.test_err"))
    path = tmp_path_factory.mktemp("target") / "ledger.csv"
    frame.write_csv(path)
    return frame, path


def _sentences(html: str) -> str:
    (block,) = re.findall(r"<ol class='verdict' id='verdict-sentences'>(.*?)</ol>", html, re.S)
    return block


def test_report_target_gen_test_err_names_the_planted_predictor(ledger, tmp_path: Path) -> None:
    _, path = ledger
    out = tmp_path / "r.html"
    assert main(["report", "--ledger", str(path), "--target", "gen.test_err", "--resamples", "100", "--out", str(out)]) == 0
    sentences = _sentences(out.read_text())
    assert re.search(r"sharpness \(τ = \+0\.\d\d[^)]*\) predicts gen\.test_err with the expected sign", sentences)
    assert "No measure predicts" not in sentences
    assert "noise_0 (" not in sentences and "noise_1 (" not in sentences


def test_report_frames_rank_every_statistic_for_the_requested_target(ledger) -> None:
    frame, _ = ledger
    frames, _ = report_frames(frame, target="gen.test_err", resamples=50)
    rank = frames["rank"]
    assert rank["target"].unique().to_list() == ["gen.test_err"]
    top = rank.row(0, named=True)
    assert top["measure"] == "measure.sharpness" and top["direction"] == "as expected" and top["kendall_ci_low"] > 0
    for name in ("granulated", "sign_error", "cmi", "verdict_matrix"):
        if "target" in frames[name].columns:
            assert frames[name]["target"].unique().to_list() == ["gen.test_err"], name
    corr = frames["correlations"]  # the ranked target with CIs, the default targets beside it with τ only
    assert set(corr["target"]) == {"gen.test_err", "gen.test_acc", "gen.test_loss", "gen.gap_acc", "gen.gap_loss"}
    assert corr.filter(pl.col("target") == "gen.test_err")["kendall_ci_low"].null_count() == 0
    assert corr.filter(pl.col("target") != "gen.test_err")["kendall_ci_low"].null_count() == 12


def test_unknown_orientation_reads_direction_unknown_and_target_better_sets_it(ledger, capsys) -> None:
    frame, path = ledger
    frames, _ = report_frames(frame, target="gen.train_acc", resamples=0)
    top = frames["rank"].row(0, named=True)
    assert top["measure"] == "measure.sharpness" and abs(top["kendall_tau"]) > 0.5 and top["direction"] == "unknown"
    cells = [r for r in matrix_rows(frames["verdict_matrix"]) if r["measure"] == "sharpness"]
    assert cells and all(r["verdict"] != "no pooled relation" for r in cells)
    assert {r["verdict"] for r in cells} <= {"direction unknown", "weakens", "reverses", "not testable"}
    assert all(r["pooled"] == f"{top['kendall_tau']:+.3f}" for r in cells)  # the τ is shown with it
    sentences = " ".join(frames["verdict_sentences"]["sentence"])
    assert f"Direction unknown: sharpness (τ = {top['kendall_tau']:+.2f})" in sentences
    assert "pass --target-better lower|higher" in sentences
    for better, sign in (("higher", -1), ("lower", +1)):
        assert main(["rank", "--ledger", str(path), "--target", "gen.train_acc", "--target-better", better,
                     "--format", "json", "--resamples", "0"]) == 0
        doc = json.loads(capsys.readouterr().out)
        row = next(r for r in doc["rows"] if r["measure"] == "measure.sharpness")
        assert row["expected_sign"] == sign and doc["meta"]["target_better"] == better
        assert row["direction"] == ("as expected" if sign * row["kendall_tau"] > 0 else "reversed")


@pytest.mark.parametrize("target, badness", [
    ("gen.gap", 1), ("gen.gap_acc", 1), ("gen.test_err", 1), ("gen.val_loss", 1), ("gen.val_error", 1),
    ("gen.generalization_gap", 1), ("gen.val_acc", -1), ("gen.test_accuracy", -1), ("gen.train_acc", 0),
    ("gen.train_loss", 0), ("gen.score", 0),
])
def test_target_orientation_rule(target: str, badness: int) -> None:
    assert target_badness(target) == badness
    assert target_badness(target, "lower") == 1 and target_badness(target, "higher") == -1
    if target not in ("gen.gap", "gen.gap_acc", "gen.test_err"):
        assert orientation_by_name(target) == badness
