"""Honest n: the seeds of a configuration are averaged before any statistic (``analyze.configurations``), so three
identical copies of every run give the ranking the CI width of one run per configuration, not a √3 narrower one."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from analyze.cli import main
from analyze.configurations import configuration_means
from tests.analyze.synthetic import synthetic_ledger


def _one_seed() -> pl.DataFrame:
    """48 configurations, one seed each (the default axes × 2 seeds renamed into an extra axis), with the
    synthetic ledger's planted reversal under adam."""
    frame = synthetic_ledger(seed=3, n_seeds=2)  # planted: a reversal of measure.planted under adam
    return frame.with_columns(pl.col("seed").alias("hp.replica"), pl.lit(0).alias("seed"))


def _copies(frame: pl.DataFrame, k: int) -> pl.DataFrame:
    """Each row ``k`` times, as seeds 0 … k−1 with their own run ids (identical measures and targets)."""
    parts = [frame.with_columns(pl.lit(s).alias("seed"), (pl.col("run_id") + f"-s{s}").alias("run_id")) for s in range(k)]
    return pl.concat(parts)


def _rank(capsys: pytest.CaptureFixture, path: Path, *extra: str) -> dict[str, dict]:
    assert main(["rank", "--ledger", str(path), "--format", "json", "--resamples", "400", *extra]) == 0
    return {r["measure"]: r for r in json.loads(capsys.readouterr().out)["rows"]}


def test_identical_seed_copies_give_the_ci_width_of_one_seed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    one = _one_seed()
    one.write_csv(tmp_path / "one.csv")
    _copies(one, 3).write_csv(tmp_path / "three.csv")
    single, tripled = _rank(capsys, tmp_path / "one.csv"), _rank(capsys, tmp_path / "three.csv")
    assert set(single) == set(tripled) and len(single) == 3
    for measure, row in single.items():
        other = tripled[measure]
        assert row["n"] == other["n"] == 48
        for coef in ("kendall", "spearman", "pearson"):
            width = row[f"{coef}_ci_high"] - row[f"{coef}_ci_low"]
            # the mean of 3 equal floats can differ from them in the last bit; nothing else differs
            assert other[f"{coef}_ci_high"] - other[f"{coef}_ci_low"] == pytest.approx(width, rel=1e-9, abs=1e-12)
            assert other[f"{coef}_p"] == pytest.approx(row[f"{coef}_p"], rel=1e-9)
    # The flags (and so the verdict built on them) see the same 48 configurations in both ledgers.
    flags = []
    for name in ("one.csv", "three.csv"):
        assert main(["flags", "--ledger", str(tmp_path / name), "--format", "json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        flags.append([(r["flag"], r["measure"], r["group"], r["n_group"], None if r["p_adj"] is None else round(r["p_adj"], 9))
                      for r in doc["rows"]])
    assert flags[0] == flags[1] and ("sign_reversal", "measure.planted", "adam", 24) in [f[:4] for f in flags[0]]
    # The same copies read as independent runs: n triples and the intervals shrink by about √3 (the test can fail).
    naive = _rank(capsys, tmp_path / "three.csv", "--no-seed-means")
    row, bad = single["measure.planted"], naive["measure.planted"]
    assert bad["n"] == 144
    ratio = (row["kendall_ci_high"] - row["kendall_ci_low"]) / (bad["kendall_ci_high"] - bad["kendall_ci_low"])
    assert 1.4 < ratio < 2.2  # √3 = 1.73, up to bootstrap noise at 400 resamples


def test_configuration_means_against_a_hand_computed_mean() -> None:
    frame = pl.DataFrame({
        "run_id": ["a", "b", "c", "d", "e"],
        "status": ["FINISHED", "FINISHED", "FINISHED", "FINISHED", "FAILED"],
        "seed": [0, 1, 0, 1, 2],
        "hp.lr": [0.1, 0.1, 0.2, 0.2, 0.1],
        "hp.opt": ["sgd", "sgd", "sgd", None, "sgd"],
        "measure.m": [1.0, float("inf"), 2.0, 4.0, 100.0],
        "gen.gap_acc": [0.1, 0.3, 0.2, 0.4, 9.0],
        "tag.note": ["x", "y", "z", "w", "v"],
    })
    means = configuration_means(frame)
    out = means.ledger
    assert means.n_runs == 4 and means.n_configurations == 3 and means.keys == ("hp.lr", "hp.opt")
    assert out["run_id"].to_list() == ["a", "c", "d"] and out["n_seeds"].to_list() == [2, 1, 1]
    assert out["measure.m"].to_list() == [1.0, 2.0, 4.0]  # ±inf is missing: the mean of the finite seeds
    assert out["gen.gap_acc"].to_list() == pytest.approx([0.2, 0.2, 0.4])  # the FAILED run never enters
    assert out["tag.note"].to_list() == ["x", "z", "w"] and means.not_averaged is None


@pytest.mark.parametrize("change, why", [
    (lambda f: f.drop("seed"), "no seed column"),
    (lambda f: f.with_columns(pl.lit(0).alias("seed")), "hold one seed more than once"),
    (lambda f: f.drop("hp.lr", "hp.opt"), "no hp.* column"),
])
def test_runs_stay_apart_when_seeds_cannot_be_told(change, why) -> None:
    frame = pl.DataFrame({"run_id": ["a", "b", "c"], "seed": [0, 1, 0], "hp.lr": [0.1, 0.1, 0.2],
                          "hp.opt": ["sgd"] * 3, "measure.m": [1.0, 2.0, 3.0], "gen.gap_acc": [0.1, 0.2, 0.3]})
    means = configuration_means(change(frame))
    assert means.n_configurations == means.n_runs == 3 and means.ledger.height == 3
    assert why in (means.not_averaged or "") and why in means.sentence()


def test_sign_error_pairs_the_seeds_of_every_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Sign-error's environments pair the seeds of two configurations (ESS ≤ s₁·s₂), so it sees every run: with
    the 5 seeds of the synthetic ledger environments reach the default --min-ess 12; on seed means none could."""
    path = tmp_path / "five.csv"
    synthetic_ledger(seed=4).write_csv(path)
    assert main(["sign-error", "--ledger", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = [r for r in doc["rows"] if r["measure"] == "measure.planted" and r["axis"] == "ALL"]
    assert rows[0]["n_envs_kept"] > 0 and rows[0]["seeds_per_config"] == 5
    assert doc["meta"]["configurations"] == {"seed_means": False, "not_averaged": "sign-error uses every run"}
